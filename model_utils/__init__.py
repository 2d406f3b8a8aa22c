"""Helpers that run the EleutherAI Pythia models through CTranslate2.

Heavy libraries (ctranslate2, tokenizers, huggingface_hub) are imported inside the
functions that need them, so importing this package is cheap and loads no model.
"""
