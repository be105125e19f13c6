"""Serving: one worker owns a loaded Tango and takes micro-batches from a bounded queue; FastAPI (app.py) and
Ray Serve (ray_app.py) are two front doors to the same batch runner (batching.py). Stands on the runtime; the
runtime never imports it."""
