"""The dashboard: a single-page app shipped in the package (`static/`), served by the API server
at `/` and `/dashboard`, with its login (`session`) and the summaries its pages read."""
