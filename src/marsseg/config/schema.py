"""The configuration schema: one frozen dataclass tree, each field with its meaning and its allowed values.

A field's rule (`fields.setting`) is the one place its choices or range are written; `marsseg config show` prints
them and `validation` checks them. Saved with every run as config.json (`store`).
"""

from __future__ import annotations

from dataclasses import dataclass

from marsseg.config.fields import section, setting

POST_SETTINGS = ("auto", "on", "off")  # every post-processing step's choices (post.tta, .morphology, .class_bias)
LOSS_TERMS = ("ce", "focal", "dice", "focal_tversky", "lovasz")  # training/losses.py builds one class for each


def loss_terms(spec: str) -> list[tuple[float, str]] | None:
    """'focal_tversky+0.5*focal' -> [(1.0, 'focal_tversky'), (0.5, 'focal')]; None when a term is unknown or its
    weight is not a number >= 0."""
    terms = []
    for part in str(spec).replace(" ", "").split("+"):
        weight, star, name = part.rpartition("*")
        if not star:
            weight, name = "1", part
        try:
            weight = float(weight)
        except ValueError:
            return None
        if name not in LOSS_TERMS or weight < 0:
            return None
        terms.append((weight, name))
    return terms


def dilation_rates(text: str) -> tuple[int, ...]:
    """'2,4' -> (2, 4); ValueError on a rate that is not an integer."""
    return tuple(int(r) for r in str(text).split(",") if r.strip())


@dataclass(frozen=True)
class DataConfig:
    competition: str = setting("an-2-dl-2024-2025-homework-2", "the Kaggle competition the data comes from")
    max_train: int = setting(0, "training images kept (0: all); presets for tests shrink it")
    max_test: int = setting(0, "test images kept (0: all)")
    val_fraction: float = setting(0.15, "share of the training images held out from both stages", within="[0.02, 0.5]")
    # The reporting part makes no decision (TTA, class biases, morphology and the stage choice are made on the
    # tuning part), so val_miou_final, its score, is not optimistic.
    report_fraction: float = setting(
        0.5,
        "share of the hold-out that only reports (val_miou_final); every choice is made on the rest",
        within="[0.05, 0.95]",
    )
    folds: int = setting(5, "stratified folds K of the development rows", within="[1, 20]")
    # Fewer models see more seconds each: with folds=4 and fold_models=1 one model trains on 3/4 of the development
    # rows for all of stage 1's time and stage 2 learns from the other quarter, which that model predicted out of fold.
    fold_models: int = setting(
        0,
        "folds that get a stage-1 model (0: all K); fewer models see more seconds each",
        within="[0, inf)",
        form="0 (every fold) or 1..data.folds",
    )


@dataclass(frozen=True)
class CleanConfig:
    enabled: bool = setting(True, "drop outlier training images before the split")
    min_duplicate_masks: int = setting(3, "a label mask shared by this many images marks them all")
    pca_components: int = setting(16, "PCA components of the image-space outlier score")
    knn_neighbours: int = setting(5, "neighbours of the k-NN outlier score")
    anomaly_quantile: float = setting(0.99, "image-space scores above this quantile are only suspects")
    template_threshold: float = setting(0.9, "normalised correlation with a found outlier that marks an image")
    template_support_margin: float = setting(0.15, "how much the template bar drops for anomalous images")


@dataclass(frozen=True)
class AugmentConfig:
    strength: str = setting(
        "medium",
        "augmentation pipeline (flips: the public write-ups' choice)",
        choices=("none", "flips", "light", "medium", "strong"),
    )
    elastic: bool = setting(False, "add elastic and grid distortion")
    bigrock_oversample: float = setting(2.0, "sampling weight of images that contain big rock")
    bigrock_offline_copies: int = setting(2, "augmented copies of each big-rock image, made once")
    # prep/copypaste.py; stage 1 only, since stage 2's inputs carry stage-1 probabilities of the original image.
    copy_paste_rate: float = setting(
        0.0,
        "chance per image and batch that a big-rock component of another image is pasted in (stage 1)",
        within="[0, 1]",
    )
    workers: int = setting(2, "threads that augment batches (at most one per core the process may use)")


@dataclass(frozen=True)
class ModelConfig:
    depth: int = setting(4, "U-Net levels: poolings down to the bottleneck", within="[2, 5]")
    base_filters: int = setting(32, "filters of the first level; each level down doubles them", within="[1, 512]")
    dropout: float = setting(0.1, "dropout rate in each convolution block", within="[0, 1)")
    batch_norm: bool = setting(True, "batch normalisation in each convolution block")
    # Keras's 0.99 keeps 37% of the initial mean 0 / variance 1 after 100 steps, and a CPU fold model takes only ~100
    # steps (its hold-out mIoU swung 0.09-0.18 while its training loss fell smoothly, measured).
    norm_momentum: float = setting(
        0.9,
        "batch-norm moving-statistics momentum (0.9 forgets the initial statistics within ~40 steps)",
        within="[0, 1)",
    )
    attention: bool = setting(True, "attention gates on the skip connections")
    deep_supervision: bool = setting(True, "auxiliary softmax heads on the decoder levels")
    aux_loss_weight: float = setting(
        0.3, "loss weight of the first auxiliary head (halving with depth)", within="[0, inf)"
    )
    # softmax(log p1 + learned correction), the correction zero at the start: stage 2 begins where stage 1 ended.
    residual: bool = setting(
        False, "stage 2 only: the main head refines stage 1's probabilities (a zero-initialised correction)"
    )
    # ASPP: dilated 3x3 branches at `context_rates` plus a global-pooling branch (models/context.py).
    context: str = setting(
        "none",
        "a context block after the bottleneck: aspp (dilated branches and global pooling) or none",
        choices=("none", "aspp"),
    )
    context_rates: str = setting("2,4", "the ASPP block's dilation rates", form="comma-separated dilation rates >= 1")
    # 2: the heads upsample their logits back (bilinear); 48 -> 152 img/s for the cpu stage 1 (measured), for coarse
    # predictions that a full-resolution stage 2 refines.
    input_stride: int = setting(
        1, "2: a strided stem halves the resolution the U-Net works at (~3x faster on a CPU); 1: full", within="[1, 2]"
    )


@dataclass(frozen=True)
class LossConfig:
    name: str = setting(
        "focal_tversky+focal",
        "the loss: terms summed with '+'",
        form=f"terms from {', '.join(LOSS_TERMS)} joined with '+', each optionally weighted like '0.5*focal'",
    )
    ignore_background: bool = setting(True, "background (class 0, not scored) gets weight 0")
    class_weights: str = setting(
        "auto",
        "auto: inverse-frequency weights from the class analysis (ce and focal terms); none",
        choices=("auto", "none"),
    )
    class_weight_power: float = setting(
        0.5,
        "auto weights are (1 / pixel share) ** power: 0.5 weights big rock ~5x a large class, 0 not at all",
        within="[0, 2]",
    )
    # The public write-ups capped big rock (~1% of pixels) at about 10x.
    max_weight_ratio: float = setting(
        0.0,
        "cap on the largest auto weight over the smallest (write-ups: ~10x); 0: no cap",
        within="[1, inf)",
        also=(0.0,),
    )
    focal_gamma: float = setting(2.0, "focal loss focusing exponent", within="[0, inf)")
    tversky_alpha: float = setting(0.7, "Tversky weight of false negatives", within="[0, 1]")
    tversky_beta: float = setting(0.3, "Tversky weight of false positives", within="[0, 1]")
    # The exponent of (1 - TI): at 0 or below the loss no longer falls as TI rises.
    tversky_gamma: float = setting(0.75, "focal Tversky exponent of (1 - Tversky index)", within="(0, inf)")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(60, "epoch cap (the deadline or patience usually stops first)", within="[1, inf)")
    batch_size: int = setting(32, "images per batch (the global batch across devices)", within="[1, 4096]")
    learning_rate: float = setting(1e-3, "peak learning rate", within="(0, 1)")
    weight_decay: float = setting(1e-4, "AdamW weight decay", within="[0, inf)")
    optimizer: str = setting("adamw", "the optimizer", choices=("adam", "adamw"))
    schedule: str = setting(
        "plateau",
        "halve on a validation plateau, or warm-up + cosine decay to the deadline",
        choices=("plateau", "cosine"),
    )
    warmup_epochs: int = setting(2, "linear warm-up epochs of the cosine schedule", within="[0, inf)")
    patience: int = setting(12, "epochs without a better validation mIoU before stopping", within="[0, inf)")
    mixed_precision: str = setting(
        "auto", "mixed float16: auto (on GPUs with tensor cores), on or off", choices=("auto", "on", "off")
    )
    run_eagerly: bool = setting(False, "skip graph tracing (tiny runs such as smoke start faster)")
    # Keras's optimizer EMA (e.g. 0.99): the best epoch and the saved model use the averaged weights (issue 27's
    # big-rock candidates; in no preset).
    ema_momentum: float = setting(
        0.0, "exponential moving average of the weights for validation and the saved model (0: off)", within="[0, 1)"
    )


@dataclass(frozen=True)
class StageConfig:
    model: ModelConfig = section(ModelConfig, "the network")
    loss: LossConfig = section(LossConfig, "the loss")
    train: TrainConfig = section(TrainConfig, "the optimizer, schedule and stopping")
    # Fold f trains variant f mod n, e.g. "attention=true context=none | attention=false context=aspp".
    model_cycle: str = setting(
        "",
        "stage 1 as an ensemble of networks: fold f trains variant f mod n (empty: every fold trains `model`)",
        form="'|'-separated variants, each space-separated key=value model settings on top of `model`",
    )


@dataclass(frozen=True)
class PostConfig:
    morphology: str = setting(
        "auto", "drop small components and fill small holes (auto: kept if mIoU rises)", choices=POST_SETTINGS
    )
    min_component: int = setting(12, "connected components smaller than this many pixels are dropped")
    max_hole: int = setting(12, "holes up to this many pixels are filled")
    tta: str = setting("auto", "horizontal-flip test-time augmentation", choices=POST_SETTINGS)
    # argmax maximises pixel accuracy, not mIoU; auto keeps the shifts only if shifts fitted on half the hold-out
    # raise the other half's mIoU.
    class_bias: str = setting(
        "auto", "per-class log-probability shifts fitted on the hold-out to maximise mIoU", choices=POST_SETTINGS
    )


@dataclass(frozen=True)
class SubmissionConfig:
    # The run folder always holds both layouts: submission.csv in the competition profile's and submission_rle.csv.
    format: str = setting(
        "rle", "layout of the copy kept under submissions/ (rle: a seventh of pixels' size)", choices=("rle", "pixels")
    )


@dataclass(frozen=True)
class SelfTrainConfig:
    """Stage 2 also learns from stage 1's confident pixels on the test images (`pipeline.selftrain`). Off in every
    preset: it is transductive, so check the competition's rules first."""

    enabled: bool = setting(False, "stage 2 also learns from stage 1's confident test pixels (transductive)")
    threshold: float = setting(
        0.9, "stage 1's probability of a class (1-4) for a pixel to be pseudo-labelled", within="(0, 1]"
    )
    max_images: int = setting(2000, "test images with the most confident pixels (0: all)", within="[0, inf)")


@dataclass(frozen=True)
class Stage2FocusConfig:
    """Stage 2 samples more often the training images where stage 1's out-of-fold prediction confuses big rock with
    another class (`pipeline.focus`): missed big rock or big rock where there is none. Off in every preset."""

    enabled: bool = setting(False, "stage 2 oversamples the images where stage 1 confuses big rock")
    oversample: float = setting(
        3.0, "sampling weight of such an image (times its big-rock oversampling)", within="[1, inf)"
    )
    min_pixels: int = setting(
        16, "labelled pixels stage 1 must get wrong about big rock for an image to count", within="[1, inf)"
    )


@dataclass(frozen=True)
class CanaryConfig:
    """A canary run (`make canary`): the full run's networks and code paths on the full data, cut to minutes, to
    learn whether the kernel runs on its machine and how fast, before hours of GPU quota go into it."""

    enabled: bool = setting(False, "run the preset as a canary: minutes, to learn the machine's speed")
    budget_seconds: float = setting(600.0, "the whole canary run, replacing budget_seconds", within="(0, inf)")
    epochs: int = setting(
        3, "epochs per model: the first compiles, the later ones time a steady epoch", within="[2, inf)"
    )


@dataclass(frozen=True)
class Config:
    preset: str = setting("gpu", "the preset this configuration started from")
    seed: int = setting(42, "seed of every random choice (splits, initialisation, augmentation)")
    budget_seconds: float = setting(3 * 3600.0, "wall-clock seconds for the whole run", within="(0, inf)")
    # On in `gpu` and `kaggle`: a broken CUDA install would otherwise spend the whole budget on the CPU.
    # `--set require_gpu=false` trains on the CPU anyway.
    require_gpu: bool = setting(False, "refuse to train when the Keras backend sees no GPU")
    two_stage: bool = setting(True, "train stage 2 on stage 1's out-of-fold probabilities")
    # When two_stage is on; stage 2, test prediction and post-processing get the rest. A residual stage 2 needs
    # fewer epochs than one from scratch.
    stage1_share: float = setting(
        0.5, "share of the budget (after loading and cleaning) for the stage-1 fold models", within="[0.05, 0.95]"
    )
    data: DataConfig = section(DataConfig, "the data, the hold-out and the folds")
    clean: CleanConfig = section(CleanConfig, "outlier removal")
    augment: AugmentConfig = section(AugmentConfig, "augmentation")
    stage1: StageConfig = section(StageConfig, "stage 1: one model per fold on the images")
    stage2: StageConfig = section(StageConfig, "stage 2: one model on the image and stage 1's probabilities")
    post: PostConfig = section(PostConfig, "post-processing")
    submission: SubmissionConfig = section(SubmissionConfig, "the submission copy")
    canary: CanaryConfig = section(CanaryConfig, "canary runs")
    self_training: SelfTrainConfig = section(SelfTrainConfig, "pseudo-labels from the test images")
    stage2_focus: Stage2FocusConfig = section(
        Stage2FocusConfig, "stage 2's sampling of the images where stage 1 confuses big rock"
    )
