"""Outgoing e-mail: SMTP with STARTTLS when configured, a folder of .eml files otherwise."""

from flask import Blueprint

# No routes: registering it puts ``portal/mail/templates`` on the template search path.
bp = Blueprint("mail", __name__, template_folder="templates")
