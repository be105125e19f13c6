"""The lean runtime: numpy diffusion loop, schedulers, tokenizer, component declarations and backends.

Importing this package (or tango_rt) pulls in numpy only; torch, transformers and diffusers load only when a
torch backend is asked for.
"""
