"""A tiny, randomly initialised Qwen2-VL built here, saved like a real checkpoint directory.

The tokenizer is a byte-level BPE without merges (256 byte symbols) plus the special tokens
Qwen2-VL's chat template and processor use, made with the ``tokenizers`` library; the
processor (tokenizer + the PIL image processor + the chat template) and the model are written
with ``save_pretrained``, so the production loader reads them as it reads a real model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL-Instruct's chat template (images and text; videos left out).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_qwen(folder: Path) -> Path:
    """Write the tiny model into ``folder`` (once) and return it."""
    if (folder / "model.safetensors").is_file():
        return folder
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import (
            PreTrainedTokenizerFast,
            Qwen2VLConfig,
            Qwen2VLForConditionalGeneration,
            Qwen2VLImageProcessorPil,
        )
    except ImportError as e:
        pytest.fail(f"the Qwen2-VL tests need torch, transformers and tokenizers ({e}): run "
                    "`make setup` (installs bookjob[render,gpu,dev]).")
    from steps.backends.qwen import image_only_processor_class

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)
    processor = image_only_processor_class()(image_processor=image_processor, tokenizer=fast,
                                             chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)

    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(alphabet) + len(SPECIAL_TOKENS), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2],
                                          "rope_theta": 10000.0},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_qwen(tmp_path_factory.getbasetemp() / "tiny-qwen2-vl")
