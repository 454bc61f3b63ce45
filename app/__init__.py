"""The web app (app.py serves it): designers generate, mix, edit and invert garments in the browser.

  studio.py   the model side, without a browser: sessions, generation, mixing, edits, inversion jobs, export,
              every limit on what a page may ask for
  page.py     the gradio page: one handler per control, each a thin call into the studio
  serve.py    app.py's options -> the checked address, the loaded model, the running server
"""
import os

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')   # no telemetry: gradio reads it at import
