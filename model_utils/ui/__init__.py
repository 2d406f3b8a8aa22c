"""The Gradio page and API endpoints; talks only to the service layer."""
