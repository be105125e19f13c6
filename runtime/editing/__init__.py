"""Sound design on the one masked loop, one module per concern:

- geometry.py: seconds to latent frames and samples, spans, crossfades, long-form windows, the loop's layout
  (pure arithmetic, no networks);
- masked.py: `Edit`, the loop's two optional inputs (a start part-way from source latents, known frames);
- runs.py: `Editor`, the runs themselves (audio in, variations, inpainting, extension, long-form, loops);
- stitch.py: `Stitcher`, which joins a long clip's windows into the segments a stream sends.

The request options that ask for them (audio, strength, inpaint, extend, loop) are declared in runtime/request.py.
"""
