"""PyTorch/numpy reference of the VMLA-DiT model contract (docs/MODEL.md).

Modules: st (safetensors), noise (Philox Gaussian noise), model (DiT, text encoder, tokenizer,
autoencoder), stream (cache, samplers, rollout), init (random models and export).
"""
