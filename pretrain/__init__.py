"""Masked-model pretraining, fine-tuning and tokenizer comparison on hep-tokenizers token streams.

Scripts (run with ``accelerate launch`` or plain ``python``): ``run_mlm.py``, ``run_finetune.py``,
``compare.py``. Helpers: ``vocab`` (what the scripts need from a tokenizer), ``data`` (columnar
token streams, length-grouped batches, padding collators), ``masking`` (token / whole-object
masking), ``modeling`` (BERT + quantizer-level embedding), ``physics`` (tokenizer-independent
score of masked-object predictions), ``synthetic`` (small datasets for tests).
"""
