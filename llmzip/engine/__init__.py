"""The language model's step: the layer loop and the ring KV cache (llama.py), the exact integer
engine (exact.py) and its kernels (numeric/products.py), rotary tables (rotary.py), key exponents
(keyscale.py), the interface every engine has (interface.py) and, behind one boundary, the
arithmetic of old files (legacy/). It never imports mixing."""
