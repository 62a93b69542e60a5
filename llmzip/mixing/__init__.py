"""Context mixing of the LM with cheap adaptive models: the mixer (mixer.py), token n-grams
(ngram.py), the match model (match.py), the recall of earlier hidden states (recall.py), the
bias head (bias.py) and their kernels (numeric/products.py). It never imports engine."""
