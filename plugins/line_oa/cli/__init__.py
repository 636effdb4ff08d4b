"""The command line (`python -m line_oa`) and the demo."""
