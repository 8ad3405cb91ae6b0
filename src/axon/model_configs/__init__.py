"""Each model family's config dataclass and named sizes (presets), without the model.

``axon.config`` builds a run's ``model`` section from these. They live apart from the models
(``axon.models``, which import torch and each other) so that building and validating a config
imports neither torch nor any model, and nothing above ``axon.config`` (tests/test_layering.py);
importing one of them never runs ``axon/models/__init__.py``. Each model module re-exports its
config and presets (``axon.models.decoder.DecoderConfig`` is ``axon.model_configs.decoder.
DecoderConfig``), and ``axon.models.FAMILIES`` pairs every name here with its model class.
"""

from __future__ import annotations

from dataclasses import dataclass

from axon.model_configs.actor_critic import PRESETS as ACTOR_CRITIC_PRESETS
from axon.model_configs.actor_critic import ActorCriticConfig
from axon.model_configs.bert import PRESETS as BERT_PRESETS
from axon.model_configs.bert import BertConfig
from axon.model_configs.conv_attention import PRESETS as CONV_ATTENTION_PRESETS
from axon.model_configs.conv_attention import ConvAttentionConfig
from axon.model_configs.decoder import PRESETS as DECODER_PRESETS
from axon.model_configs.decoder import DecoderConfig
from axon.model_configs.detr import PRESETS as DETR_PRESETS
from axon.model_configs.detr import DETRConfig
from axon.model_configs.dpr import PRESETS as DPR_PRESETS
from axon.model_configs.dpr import DPRConfig
from axon.model_configs.embed_reader import PRESETS as EMBED_READER_PRESETS
from axon.model_configs.embed_reader import EmbedReaderConfig
from axon.model_configs.late_fusion import PRESETS as LATE_FUSION_PRESETS
from axon.model_configs.late_fusion import LateFusionConfig
from axon.model_configs.mamba import PRESETS as MAMBA_PRESETS
from axon.model_configs.mamba import MambaConfig
from axon.model_configs.marl import PRESETS as MARL_PRESETS
from axon.model_configs.marl import MARLConfig
from axon.model_configs.mlp_denoiser import PRESETS as MLP_DENOISER_PRESETS
from axon.model_configs.mlp_denoiser import MLPDenoiserConfig
from axon.model_configs.progressive import PRESETS as PROGRESSIVE_PRESETS
from axon.model_configs.progressive import ProgressiveConfig
from axon.model_configs.resnet import PRESETS as RESNET_PRESETS
from axon.model_configs.resnet import ResNetConfig
from axon.model_configs.reward import PRESETS as REWARD_PRESETS
from axon.model_configs.reward import RewardConfig
from axon.model_configs.rnn import PRESETS as RNN_PRESETS
from axon.model_configs.routed import PRESETS as ROUTED_PRESETS
from axon.model_configs.routed import RoutedConfig
from axon.model_configs.routed_vision import PRESETS as ROUTED_VISION_PRESETS
from axon.model_configs.routed_vision import RoutedVisionConfig
from axon.model_configs.wm import CONTROLLER_PRESETS, MDNRNN_PRESETS, VAE_PRESETS, ControllerConfig, MDNRNNConfig, WMVAEConfig
from axon.model_configs.rnn import RNNConfig
from axon.model_configs.rnn_classifier import PRESETS as RNN_CLASSIFIER_PRESETS
from axon.model_configs.rnn_classifier import RNNClassifierConfig
from axon.model_configs.rnn_seq2seq import PRESETS as RNN_SEQ2SEQ_PRESETS
from axon.model_configs.rnn_seq2seq import RNNSeq2SeqConfig
from axon.model_configs.rnn_tagger import PRESETS as RNN_TAGGER_PRESETS
from axon.model_configs.rnn_tagger import RNNTaggerConfig
from axon.model_configs.seq2seq import PRESETS as SEQ2SEQ_PRESETS
from axon.model_configs.seq2seq import TransformerConfig
from axon.model_configs.unet import PRESETS as UNET_PRESETS
from axon.model_configs.unet import UNetConfig
from axon.model_configs.vision_mamba import PRESETS as VISION_MAMBA_PRESETS
from axon.model_configs.vision_mamba import VisionMambaConfig
from axon.model_configs.vit import PRESETS as VIT_PRESETS
from axon.model_configs.vit import ViTConfig
from axon.model_configs.vit_hybrid import PRESETS as VIT_HYBRID_PRESETS
from axon.model_configs.vit_hybrid import ViTHybridConfig
from axon.model_configs.vqvae import PRESETS as VQVAE_PRESETS
from axon.model_configs.vqvae import VQVAEConfig
from axon.model_configs.fasttext import PRESETS as FASTTEXT_PRESETS
from axon.model_configs.fasttext import FastTextConfig
from axon.model_configs.glove import PRESETS as GLOVE_PRESETS
from axon.model_configs.glove import GloVeConfig
from axon.model_configs.word2vec import PRESETS as WORD2VEC_PRESETS
from axon.model_configs.word2vec import Word2VecConfig


@dataclass(frozen=True)
class FamilyConfig:
    config: type  # the dataclass of the model section
    presets: dict  # name -> dict(params=..., source=..., config={field: value})


# In axon.models.FAMILIES' order (error messages list the names in it; tests/test_layering.py checks).
FAMILY_CONFIGS: dict[str, FamilyConfig] = {
    "decoder": FamilyConfig(DecoderConfig, DECODER_PRESETS),
    "bert": FamilyConfig(BertConfig, BERT_PRESETS),
    "rnn": FamilyConfig(RNNConfig, RNN_PRESETS),
    "rnn_classifier": FamilyConfig(RNNClassifierConfig, RNN_CLASSIFIER_PRESETS),
    "rnn_tagger": FamilyConfig(RNNTaggerConfig, RNN_TAGGER_PRESETS),
    "word2vec": FamilyConfig(Word2VecConfig, WORD2VEC_PRESETS),
    "glove": FamilyConfig(GloVeConfig, GLOVE_PRESETS),
    "fasttext": FamilyConfig(FastTextConfig, FASTTEXT_PRESETS),
    "seq2seq": FamilyConfig(TransformerConfig, SEQ2SEQ_PRESETS),
    "rnn_seq2seq": FamilyConfig(RNNSeq2SeqConfig, RNN_SEQ2SEQ_PRESETS),
    "progressive": FamilyConfig(ProgressiveConfig, PROGRESSIVE_PRESETS),
    "conv_attention": FamilyConfig(ConvAttentionConfig, CONV_ATTENTION_PRESETS),
    "mamba": FamilyConfig(MambaConfig, MAMBA_PRESETS),
    "reward": FamilyConfig(RewardConfig, REWARD_PRESETS),
    "actor_critic": FamilyConfig(ActorCriticConfig, ACTOR_CRITIC_PRESETS),
    "unet": FamilyConfig(UNetConfig, UNET_PRESETS),
    "mlp_denoiser": FamilyConfig(MLPDenoiserConfig, MLP_DENOISER_PRESETS),
    "resnet": FamilyConfig(ResNetConfig, RESNET_PRESETS),
    "vit": FamilyConfig(ViTConfig, VIT_PRESETS),
    "vision_mamba": FamilyConfig(VisionMambaConfig, VISION_MAMBA_PRESETS),
    "vit_hybrid": FamilyConfig(ViTHybridConfig, VIT_HYBRID_PRESETS),
    "detr": FamilyConfig(DETRConfig, DETR_PRESETS),
    "vqvae": FamilyConfig(VQVAEConfig, VQVAE_PRESETS),
    "late_fusion": FamilyConfig(LateFusionConfig, LATE_FUSION_PRESETS),
    "dpr": FamilyConfig(DPRConfig, DPR_PRESETS),
    "routed": FamilyConfig(RoutedConfig, ROUTED_PRESETS),
    "embed_reader": FamilyConfig(EmbedReaderConfig, EMBED_READER_PRESETS),
    "routed_vision": FamilyConfig(RoutedVisionConfig, ROUTED_VISION_PRESETS),
    "wm_vae": FamilyConfig(WMVAEConfig, VAE_PRESETS),
    "wm_mdnrnn": FamilyConfig(MDNRNNConfig, MDNRNN_PRESETS),
    "wm_controller": FamilyConfig(ControllerConfig, CONTROLLER_PRESETS),
    "marl": FamilyConfig(MARLConfig, MARL_PRESETS),
}

__all__ = [
    "FAMILY_CONFIGS",
    "FamilyConfig",
    "ActorCriticConfig",
    "BertConfig",
    "ConvAttentionConfig",
    "DecoderConfig",
    "DETRConfig",
    "EmbedReaderConfig",
    "LateFusionConfig",
    "MambaConfig",
    "MARLConfig",
    "MLPDenoiserConfig",
    "ProgressiveConfig",
    "ResNetConfig",
    "RewardConfig",
    "RNNConfig",
    "RoutedConfig",
    "RoutedVisionConfig",
    "RNNClassifierConfig",
    "RNNSeq2SeqConfig",
    "TransformerConfig",
    "UNetConfig",
    "ViTConfig",
    "VisionMambaConfig",
    "ViTHybridConfig",
    "VQVAEConfig",
    "Word2VecConfig",
    "GloVeConfig",
    "FastTextConfig",
    "WMVAEConfig",
    "MDNRNNConfig",
    "ControllerConfig",
]
