"""Model families. Each family is a config dataclass, a module, and a table of presets.

The configs and presets live in ``axon.model_configs`` (torch-free, so that ``axon.config``
validates a run without importing the models); each model module re-exports its own, and
``FAMILIES`` lists the families in ``axon.model_configs.FAMILY_CONFIGS``' order."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from axon.models.actor_critic import PRESETS as ACTOR_CRITIC_PRESETS
from axon.models.actor_critic import ActorCritic, ActorCriticConfig
from axon.models.bert import PRESETS as BERT_PRESETS
from axon.models.bert import Bert, BertConfig
from axon.models.conv_attention import PRESETS as CONV_ATTENTION_PRESETS
from axon.models.conv_attention import ConvAttention, ConvAttentionConfig
from axon.models.decoder import PRESETS as DECODER_PRESETS
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.detr import DETR, DETRConfig
from axon.models.detr import PRESETS as DETR_PRESETS
from axon.models.dpr import DPR, DPRConfig
from axon.models.dpr import PRESETS as DPR_PRESETS
from axon.models.embed_reader import PRESETS as EMBED_READER_PRESETS
from axon.models.embed_reader import EmbedReader, EmbedReaderConfig
from axon.models.late_fusion import PRESETS as LATE_FUSION_PRESETS
from axon.models.late_fusion import LateFusion, LateFusionConfig
from axon.models.mamba import PRESETS as MAMBA_PRESETS
from axon.models.mamba import Mamba, MambaConfig
from axon.models.marl import PRESETS as MARL_PRESETS
from axon.models.marl import MARLConfig, MultiAgentActorCritic
from axon.models.mlp_denoiser import PRESETS as MLP_DENOISER_PRESETS
from axon.models.mlp_denoiser import MLPDenoiser, MLPDenoiserConfig
from axon.models.progressive import PRESETS as PROGRESSIVE_PRESETS
from axon.models.progressive import ProgressiveConfig, ProgressiveDecoder
from axon.models.resnet import PRESETS as RESNET_PRESETS
from axon.models.resnet import ResNet, ResNetConfig
from axon.models.reward import PRESETS as REWARD_PRESETS
from axon.models.reward import RewardConfig, RewardModel
from axon.models.rnn import PRESETS as RNN_PRESETS
from axon.models.rnn import RNNLM, RNNConfig
from axon.models.routed import PRESETS as ROUTED_PRESETS
from axon.models.routed import Routed, RoutedConfig
from axon.models.routed_vision import PRESETS as ROUTED_VISION_PRESETS
from axon.models.routed_vision import RoutedVision, RoutedVisionConfig
from axon.models.wm import (
    CONTROLLER_PRESETS, MDNRNN_PRESETS, VAE_PRESETS, ControllerConfig, ConvVAE, LinearController, MDNRNN, MDNRNNConfig, WMVAEConfig,
)
from axon.models.rnn_classifier import PRESETS as RNN_CLASSIFIER_PRESETS
from axon.models.rnn_classifier import RNNClassifier, RNNClassifierConfig
from axon.models.rnn_seq2seq import PRESETS as RNN_SEQ2SEQ_PRESETS
from axon.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from axon.models.rnn_tagger import PRESETS as RNN_TAGGER_PRESETS
from axon.models.rnn_tagger import RNNTagger, RNNTaggerConfig
from axon.models.seq2seq import PRESETS as SEQ2SEQ_PRESETS
from axon.models.seq2seq import Transformer, TransformerConfig
from axon.models.unet import PRESETS as UNET_PRESETS
from axon.models.unet import UNet, UNetConfig
from axon.models.vision_mamba import PRESETS as VISION_MAMBA_PRESETS
from axon.models.vision_mamba import VisionMamba, VisionMambaConfig
from axon.models.vit import PRESETS as VIT_PRESETS
from axon.models.vit import ViT, ViTConfig
from axon.models.vit_hybrid import PRESETS as VIT_HYBRID_PRESETS
from axon.models.vit_hybrid import ViTHybrid, ViTHybridConfig
from axon.models.vqvae import PRESETS as VQVAE_PRESETS
from axon.models.vqvae import VQVAE, VQVAEConfig
from axon.models.fasttext import PRESETS as FASTTEXT_PRESETS
from axon.models.fasttext import FastText, FastTextConfig
from axon.models.glove import PRESETS as GLOVE_PRESETS
from axon.models.glove import GloVe, GloVeConfig
from axon.models.word2vec import PRESETS as WORD2VEC_PRESETS
from axon.models.word2vec import Word2Vec, Word2VecConfig


@dataclass(frozen=True)
class Family:
    config: type
    model: type
    presets: dict
    task: str = "lm"  # the task a run of this family trains on unless the config names one (axon.tasks)
    other_tasks: tuple[str, ...] = ()  # further tasks its model serves (BERT: classify; causal LMs: CAUSAL_LM_TASKS)


#: The tasks every causal language model serves besides lm: fine-tuning on answers, on comparisons, on its own pairs,
#: and images as tokens of its vocabulary (early fusion).
CAUSAL_LM_TASKS = ("sft", "dpo", "online_dpo", "mixed_modal", "rag")

FAMILIES: dict[str, Family] = {
    "decoder": Family(DecoderConfig, Decoder, DECODER_PRESETS, other_tasks=(*CAUSAL_LM_TASKS, "gato")),  # gato: axon.tasks.gato
    "bert": Family(BertConfig, Bert, BERT_PRESETS, task="mlm", other_tasks=("classify", "tag")),  # Devlin et al. 2019; task: classify / tag to fine-tune
    "rnn": Family(RNNConfig, RNNLM, RNN_PRESETS, other_tasks=CAUSAL_LM_TASKS),  # RNN / LSTM / GRU language models
    "rnn_classifier": Family(RNNClassifierConfig, RNNClassifier, RNN_CLASSIFIER_PRESETS, task="classify"),  # BiLSTM/GRU
    "rnn_tagger": Family(RNNTaggerConfig, RNNTagger, RNN_TAGGER_PRESETS, task="tag"),  # BiLSTM(-CRF) tagger, Huang et al. 2015
    "word2vec": Family(Word2VecConfig, Word2Vec, WORD2VEC_PRESETS, task="word2vec"),  # Mikolov et al. 2013
    "glove": Family(GloVeConfig, GloVe, GLOVE_PRESETS, task="glove"),  # Pennington et al. 2014
    "fasttext": Family(FastTextConfig, FastText, FASTTEXT_PRESETS, task="fasttext"),  # Bojanowski et al. 2017
    "seq2seq": Family(TransformerConfig, Transformer, SEQ2SEQ_PRESETS, task="seq2seq", other_tasks=("rag",)),  # Vaswani et al. 2017
    "rnn_seq2seq": Family(RNNSeq2SeqConfig, RNNSeq2Seq, RNN_SEQ2SEQ_PRESETS, task="seq2seq"),  # Bahdanau / Luong 2015
    "progressive": Family(ProgressiveConfig, ProgressiveDecoder, PROGRESSIVE_PRESETS, other_tasks=CAUSAL_LM_TASKS),  # grows by duplicating layers (ours)
    "conv_attention": Family(ConvAttentionConfig, ConvAttention, CONV_ATTENTION_PRESETS, other_tasks=CAUSAL_LM_TASKS),  # causal hourglass (ours)
    "mamba": Family(MambaConfig, Mamba, MAMBA_PRESETS, other_tasks=CAUSAL_LM_TASKS),  # selective state spaces, Gu & Dao 2023
    "reward": Family(RewardConfig, RewardModel, REWARD_PRESETS, task="reward"),  # scalar reward, Ouyang et al. 2022
    "actor_critic": Family(ActorCriticConfig, ActorCritic, ACTOR_CRITIC_PRESETS, task="ppo",
                           other_tasks=("grpo",)),  # PPO's policy + value head; GRPO's policy (value_head: none)
    "unet": Family(UNetConfig, UNet, UNET_PRESETS, task="diffusion"),  # DDPM's denoiser, Ho et al. 2020
    "mlp_denoiser": Family(MLPDenoiserConfig, MLPDenoiser, MLP_DENOISER_PRESETS, task="diffusion"),  # 2-D toy data
    "resnet": Family(ResNetConfig, ResNet, RESNET_PRESETS, task="image_classify"),  # He et al. 2016
    "vit": Family(ViTConfig, ViT, VIT_PRESETS, task="image_classify"),  # Dosovitskiy et al. 2021
    "vision_mamba": Family(VisionMambaConfig, VisionMamba, VISION_MAMBA_PRESETS, task="image_classify"),  # Zhu et al. 2024
    "vit_hybrid": Family(ViTHybridConfig, ViTHybrid, VIT_HYBRID_PRESETS, task="image_classify"),  # ResNet tokens, ViT
    "detr": Family(DETRConfig, DETR, DETR_PRESETS, task="detect"),  # Carion et al. 2020: set prediction of boxes
    "vqvae": Family(VQVAEConfig, VQVAE, VQVAE_PRESETS, task="vq"),  # van den Oord et al. 2017: an image tokenizer
    "late_fusion": Family(LateFusionConfig, LateFusion, LATE_FUSION_PRESETS, task="mixed_modal"),  # MM1 / LLaVA: ViT -> connector -> decoder prefix
    "dpr": Family(DPRConfig, DPR, DPR_PRESETS, task="dpr"),  # Karpukhin et al. 2020: question and passage encoders
    "routed": Family(RoutedConfig, Routed, ROUTED_PRESETS, other_tasks=CAUSAL_LM_TASKS),  # a Switch router over whole LMs
    "embed_reader": Family(EmbedReaderConfig, EmbedReader, EMBED_READER_PRESETS, task="rag"),  # passage vectors as a decoder prefix (issue 23)
    "routed_vision": Family(RoutedVisionConfig, RoutedVision, ROUTED_VISION_PRESETS, task="image_classify",
                            other_tasks=("detect",)),  # a Switch router over whole image models (config.tasks: which)
    "wm_vae": Family(WMVAEConfig, ConvVAE, VAE_PRESETS, task="wm_vae"),  # World Models' V, Ha & Schmidhuber 2018
    "wm_mdnrnn": Family(MDNRNNConfig, MDNRNN, MDNRNN_PRESETS, task="wm_mdn"),  # World Models' M
    "wm_controller": Family(ControllerConfig, LinearController, CONTROLLER_PRESETS, task="wm_controller"),  # C, by CMA-ES
    "marl": Family(MARLConfig, MultiAgentActorCritic, MARL_PRESETS, task="mappo"),  # MAPPO / IPPO, Yu et al. 2022 (issue 24)
}


def build_model(cfg) -> nn.Module:
    """Instantiate the module of the family whose config ``cfg`` is."""
    return FAMILIES[cfg.family].model(cfg)


__all__ = ["FAMILIES", "Family", "build_model", "Decoder", "DecoderConfig"]
