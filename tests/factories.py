"""Model factories a user would write; tests copy this file beside their recipes."""

from torch import nn


def tiny_mlp(hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def two_outputs() -> nn.Module:
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(64, 8)
            self.head_a = nn.Linear(8, 10)
            self.head_b = nn.Linear(8, 2)

        def forward(self, image):
            hidden = self.body(image.flatten(1)).relu()
            return self.head_a(hidden), self.head_b(hidden)

    return TwoHeads()


def not_a_module():
    return "a string"


def tiny_bert(attention: str = "sdpa") -> nn.Module:
    """A 2-layer BERT-style encoder from a transformers config (random weights, no download).
    attention: "eager" exports the pattern ONNX Runtime's transformer optimizer fuses into Attention."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        attn_implementation=attention,
    )

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel(config, add_pooling_layer=False)

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return Encoder()


def tiny_bert_pooled(masked: bool = True) -> nn.Module:
    """tiny_bert with a sentence-embedding head: the mean of the real tokens' states, or with
    masked=False of every position's, padding included (an output the padding changes)."""
    encoder = tiny_bert()

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            states = self.encoder(input_ids, attention_mask, token_type_ids)
            weights = (
                (attention_mask if masked else attention_mask.new_ones(attention_mask.shape))
                .unsqueeze(-1)
                .to(states.dtype)
            )
            return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    return Pooled()


def overflows_fp16() -> nn.Module:
    """Intermediate values near 1e5, beyond FP16's 65504, scaled back before the output."""

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, image):
            return self.linear(image.flatten(1)) * 1e5 / 1e5 + 1.0

    return Scaled()


def tiny_rgb_cnn(classes: int = 2) -> nn.Module:
    """Takes 3×32×32 images, as a folder of photographs is preprocessed for it."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes)
    )


def wide_mlp(hidden: int = 4096) -> nn.Module:
    """About a millisecond per sample on one CPU core: long enough for the server scenario."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )
