"""Reading a model's weights, configuration and tokenizer: a GGUF file (tensors dequantised
to float32 one at a time, on demand) or a Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llmzip.engine.llama import LlamaConfig

_GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GGUF_NAMES:
        return _GGUF_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _GGUF_LAYER:
        return f"model.layers.{parts[1]}.{_GGUF_LAYER[parts[2]]}"
    return None



class GGUFWeights:
    """The tensors of a GGUF file under their Hugging Face names, dequantised to float32 one
    at a time, on demand (the file is memory-mapped). Llama's q and k rows are put back from
    llama.cpp's rotary order into Hugging Face's, as transformers does."""

    def __init__(self, path: Path, config: LlamaConfig) -> None:
        import gguf

        self.reader = gguf.GGUFReader(str(path))
        field = self.reader.fields["general.architecture"]
        self.arch = bytes(field.parts[field.data[0]]).decode()
        self.config = config
        self.tensors = {}
        for t in self.reader.tensors:
            name = _hf_name(t.name)
            if name is not None:
                self.tensors[name] = t

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    def __getitem__(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        t = self.tensors[name]
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if self.arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = (self.config.num_heads if "q_proj" in name else self.config.num_kv_heads)
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:])
            w = w.swapaxes(2, 1).reshape(-1, *w.shape[3:])
        return torch.from_numpy(np.array(w, dtype=np.float32))  # a writable copy



def hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        weights: dict[str, torch.Tensor] = {}
        for f in files:
            weights.update(load_file(str(f)))
        return weights
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return dict(model.state_dict())



def config_and_tokenizer(gguf: Path):
    """The Hugging Face config dict and the (tokenizers) tokenizer of a GGUF, from its
    metadata."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).to_dict()
    config.pop("quantization_config", None)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return config, tok.backend_tokenizer

