"""The file format and what it names: the container's grammar (container.py), how a frame is cut
into streams (layout.py), line ends (lineends.py) and the mixer's settings in their wire form
(mixconfig.py). Torch-free; imports only llmzip.errors."""
