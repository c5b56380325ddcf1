"""The startup script, item runner and report templates (Jinja); installed as the package runner.templates."""
