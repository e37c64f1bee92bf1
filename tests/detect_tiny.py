"""A tiny detector network with random weights, for fast runtime / detector tests."""

import torch

from rtcal.detect.model import DetectorNetConfig, build_detector, save_checkpoint

TINY = DetectorNetConfig(in_channels=8, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                         window_size=4, fpn_dim=16, mask_dim=8, n_queries=12,
                         n_learned_queries=2, n_decoder_layers=2, n_decoder_heads=2,
                         decoder_ffn_dim=32)


def tiny_model(seed: int = 0, confident: bool = False):
    """The tiny network in eval mode; ``confident``: every query says "neuron" (its
    class bias raised), so random weights still yield instances."""
    torch.manual_seed(seed)
    model = build_detector(TINY).eval()
    if confident:
        with torch.no_grad():
            model.decoder.head.class_embed.bias.fill_(4.0)
    return model


def tiny_checkpoint(path, seed: int = 0, confident: bool = True):
    save_checkpoint(path, tiny_model(seed, confident), {"preset": "tiny-test"})
    return path
