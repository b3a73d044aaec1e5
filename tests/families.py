"""Tiny random QA models of every encoder family we support, with tokenizers trained here, offline.

    from tests.families import FAMILIES, build_family
    folder = build_family("deberta-v2", tmp_path / "deberta")   # -> a standard HF folder
    model = AutoModelForQuestionAnswering.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)

Each folder holds a randomly initialised `*ForQuestionAnswering` model built from the family's
config class (2 layers, hidden 32, a vocabulary of about a thousand pieces) and a fast tokenizer of the
family's kind, trained with the `tokenizers` library on the built-in synthetic passages and wrapped
in the tokenizer class transformers itself uses for that family:

    family        tokenizer model                      special tokens (pair)          token types
    bert          WordPiece (lower-cased)              [CLS] a [SEP] b [SEP]          yes
    electra       WordPiece (lower-cased)              [CLS] a [SEP] b [SEP]          yes
    distilbert    WordPiece (lower-cased)              [CLS] a [SEP] b [SEP]          no
    roberta       byte-level BPE                       <s> a </s></s> b </s>          no
    modernbert    byte-level BPE                       [CLS] a [SEP] b [SEP]          no
    xlm-roberta   Unigram, Metaspace (SentencePiece)   <s> a </s></s> b </s>          no
    albert        Unigram, Metaspace (lower-cased)     [CLS] a [SEP] b [SEP]          no (transformers 5)
    deberta-v2    Unigram, Metaspace (DeBERTa-v3 form) [CLS] a [SEP] b [SEP]          yes

`build_mpnet` adds MPNet (WordPiece, <s> a </s></s> b </s>, no token types): no layer-wise IG of its own,
it goes through the generic path (`GENERIC_ONLY`).

Building one takes well under a second; the results depend only on `seed`.
"""

from __future__ import annotations

import json
from pathlib import Path

FAMILIES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2", "modernbert")
GENERIC_ONLY = "mpnet"  # a family with no stack of its own in lit_rcqa.attribution: the generic path

LAYERS = 2
HIDDEN = 32
HEADS = 2
VOCAB_SIZE = 1000  # pieces the tokenizer trainers aim for (byte-level BPE: 256 bytes + merges)
MAX_POSITIONS = 512

# A little ordinary English beside the synthetic passages: digits, punctuation, casing, long words.
_EXTRA_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank. In 1998, 42 people visited the museum; "
    "they paid $3.50 each. What is the capital of France? Paris is the capital and most populous city of "
    "France, with an estimated population of 2,102,650 residents. Who wrote the book? She did, in 2001!"
)


def _corpus(seed: int) -> list[str]:
    from lit_rcqa.data.synthetic import make_synthetic_splits

    train, _ = make_synthetic_splits(300, 1, seed=seed)
    return list(dict.fromkeys(ex.context for ex in train)) + [ex.question for ex in train] + [_EXTRA_TEXT]


def _wordpiece_vocab(texts: list[str], specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")) -> dict[str, int]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, show_progress=False, special_tokens=list(specials))
    tok.train_from_iterator(texts, trainer)
    return tok.get_vocab()


def _byte_bpe(texts: list[str], specials: list[str], add_prefix_space: bool):
    """A trained byte-level BPE `Tokenizer` (no post-processor yet) and its vocab and merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return tok, model["vocab"], merges


def _unigram_vocab(texts: list[str], specials: list[str], unk: str, lowercase: bool = False) -> list[tuple[str, float]]:
    """SentencePiece-style Unigram pieces with scores; `specials` take ids 0, 1, ... in that order."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token=unk,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]


def build_tokenizer(name: str, seed: int = 0):
    """The family's fast tokenizer (a transformers tokenizer object, not saved)."""
    import transformers
    from tokenizers import processors

    texts = _corpus(seed)
    if name in ("bert", "electra"):
        return transformers.BertTokenizer(vocab=_wordpiece_vocab(texts))
    if name == "distilbert":
        return transformers.DistilBertTokenizer(vocab=_wordpiece_vocab(texts))
    if name == "roberta":
        _, vocab, merges = _byte_bpe(texts, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], add_prefix_space=False)
        return transformers.RobertaTokenizer(vocab=vocab, merges=merges)
    if name == "modernbert":
        # ModernBERT's own tokenizer: byte-level BPE (OLMo-style) with BERT's [CLS]/[SEP] template,
        # served by the generic fast class (its tokenizer_config names no model-specific class).
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok, _, _ = _byte_bpe(texts, specials, add_prefix_space=False)
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        return transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
            mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    if name == "xlm-roberta":
        vocab = _unigram_vocab(texts, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk="<unk>")
        return transformers.XLMRobertaTokenizer(vocab=vocab)
    if name == "albert":
        vocab = _unigram_vocab(texts, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], unk="<unk>", lowercase=True)
        return transformers.AlbertTokenizer(vocab=vocab)
    if name == "deberta-v2":
        vocab = _unigram_vocab(texts, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], unk="[UNK]")
        return transformers.DebertaV2Tokenizer(vocab=vocab, unk_id=3)
    raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")


def build_config(name: str, tokenizer):
    """The family's config: 2 layers, hidden 32, the tokenizer's vocabulary and special token ids."""
    from transformers import AutoConfig

    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    common = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=2 * HIDDEN, max_position_embeddings=MAX_POSITIONS, **ids)
    if name in ("roberta", "xlm-roberta"):
        # Positions start after the padding index (fairseq), hence 2 extra rows.
        return AutoConfig.for_model(name, **{**common, "max_position_embeddings": MAX_POSITIONS + 2},
                                    type_vocab_size=1, bos_token_id=tokenizer.bos_token_id,
                                    eos_token_id=tokenizer.eos_token_id)
    if name == "distilbert":
        return AutoConfig.for_model(name, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=2 * HIDDEN,
                                    max_position_embeddings=MAX_POSITIONS, **ids)
    if name == "electra":
        return AutoConfig.for_model(name, embedding_size=HIDDEN, **common)
    if name == "albert":
        # One shared layer applied LAYERS times; a factorised embedding smaller than the hidden size.
        return AutoConfig.for_model(name, embedding_size=16, **common)
    if name == "deberta-v2":
        # DeBERTa-v3's layout: relative positions only (no absolute position input), log buckets.
        return AutoConfig.for_model(name, **common, type_vocab_size=0, relative_attention=True,
                                    position_biased_input=False, pos_att_type=["p2c", "c2p"],
                                    max_relative_positions=-1, position_buckets=64, norm_rel_ebd="layer_norm",
                                    share_att_key=True)
    if name == "modernbert":
        # Layer 0 global attention, layer 1 local (16-token window, smaller than a window of text).
        return AutoConfig.for_model(name, **common, global_attn_every_n_layers=2, local_attention=16,
                                    cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                    bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    if name == "bert":
        return AutoConfig.for_model(name, **common)
    raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")


def build_family(name: str, folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random `*ForQuestionAnswering` model of family `name` and its tokenizer to `folder`.

    `folder` is a standard Hugging Face folder afterwards (config.json, model.safetensors, tokenizer
    files): `AutoModelForQuestionAnswering.from_pretrained` and `AutoTokenizer.from_pretrained` load it.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    folder = Path(folder)
    tokenizer = build_tokenizer(name, seed=seed)
    config = build_config(name, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_config(config).eval()
    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_mpnet(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random MPNetForQuestionAnswering and a WordPiece MPNet tokenizer, like `build_family`."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    # MPNet's own order: <s> 0, <pad> 1 (its embeddings' padding index), </s> 2
    vocab = _wordpiece_vocab(_corpus(seed), specials=("<s>", "<pad>", "</s>", "[UNK]", "<mask>"))
    tokenizer = transformers.MPNetTokenizer(vocab=vocab)
    config = AutoConfig.for_model("mpnet", vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                  num_attention_heads=HEADS, intermediate_size=2 * HIDDEN,
                                  max_position_embeddings=MAX_POSITIONS + 2, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    AutoModelForQuestionAnswering.from_config(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
