"""Administration UI for an organisation: users, departments, organisation profile."""
