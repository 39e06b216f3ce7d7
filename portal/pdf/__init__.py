"""PDF rendering: the one place the portal calls WeasyPrint (see ``portal.pdf.render``)."""
