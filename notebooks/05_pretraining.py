# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Is classification pre-training necessary for SOD?
#
# **Claim (c).** Salient object detection does not need an encoder pre-trained on image
# classification (ImageNet): the same model trained from scratch reaches comparable accuracy.
#
# **Protocol (ours).** ImageNet is out of reach on a CPU, so the stand-in for "pre-trained on
# classification" is an encoder trained to classify the benchmark's own category labels (the
# classification twin of CSNet). The same CSNet is then trained for saliency twice, from scratch
# and from that encoder, with identical seeds, schedule and data, on several fractions of the
# training set (stratified by category) to see whether pre-training matters more when data is
# scarce. The difference in max-F gets a paired bootstrap 90% interval over test images.
#
# The claim fails if, with the full training set, the gain's interval lies entirely outside
# [-0.02, +0.02] max-F (the rule is stated in "What we found").
# (With a user-provided DUTS-TR folder, `data_root` switches the notebook to real data; the
# category labels it needs come from a `categories.csv`, see `data/README.md`.)
#
# **New here?** Salient object detection (SOD) outputs a map: for every pixel, how much it
# belongs to the object that stands out (0-1). Classification outputs one category name per
# image; the figure below shows both on the same images. Most SOD models start from an encoder
# *pre-trained* on classification (its weights learnt to name objects) rather than *from
# scratch* (random weights). Each way of starting is an *arm* of the experiment; a *learning
# curve* follows an arm's validation score epoch by epoch (one epoch: one pass over the
# training images). If saliency needs no knowledge of categories, the arms should end level.

# %% tags=["parameters"]
mode = "quick"
data_root = None
device = "auto"
results_dir = None

# %%
import matplotlib.pyplot as plt
from IPython.display import display

from sodlab import experiments as ex
from sodlab import verdicts, viz
from sodlab.studies import start_study

SIZES = {
    "quick": dict(fractions=(0.5, 1.0), width=8, epochs=1, pretrain_epochs=1, image_size=64, batch_size=16, n_boot=100),
    "standard": dict(fractions=(0.1, 0.3, 1.0), width=16, epochs=5, pretrain_epochs=5, image_size=64, batch_size=16, n_boot=1000),
    "full": dict(fractions=(0.05, 0.1, 0.25, 0.5, 1.0), width=20, epochs=40, pretrain_epochs=40, image_size=224, batch_size=32, n_boot=2000),
}
study = start_study("05_pretraining", mode, SIZES, data_root=data_root, device=device, results_dir=results_dir)
S = study.sizes
viz.task_primer(study.sample_data());
S

# %%
print(study.device_note())
res = study.cached(
    ex.pretraining_effect, study.data_root, fractions=S["fractions"], width=S["width"], epochs=S["epochs"], image_size=S["image_size"],
    seed=0, device=study.device, work_dir=study.work_dir, pretrain_epochs=S["pretrain_epochs"],
    batch_size=S["batch_size"], n_boot=S["n_boot"], arms=("scratch", "pretrained", "random_labels", "scratch_matched"),
)
for name, df in res.items():
    study.save_table(df, name)
res["final"]

# %% [markdown]
# ## Learning curves (full training set)

# %%
curves = res["curves"]
full = curves[curves.fraction == max(S["fractions"])]
val_col = next((c for c in ("val_max_f", "max_f") if c in curves), None)
loss_col = next((c for c in ("train_task_loss", "train_loss") if c in curves), None)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
if loss_col:
    viz.metric_curves(full, x="epoch", y=loss_col, hue="init", xlabel="epoch", ylabel="training loss (BCE, nats/pixel)",
                      title="Training loss", ax=axes[0])
if val_col:
    viz.metric_curves(full, x="epoch", y=val_col, hue="init", xlabel="epoch", ylabel="validation max F-measure (0-1)",
                      title="Validation max-F", ax=axes[1])
study.savefig(fig, "learning_curves")

# %% [markdown]
# ## Data efficiency

# %%
eff = res["efficiency"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
viz.metric_curves(res["final"], x="n_train", y="max_f", hue="init", xlabel="training images (count)",
                  ylabel="test max F-measure (0-1)", title="Scratch vs pre-trained", ax=axes[0])
viz.metric_curves(eff, x="n_train", y="max_f_gain", band=("low", "high"), xlabel="training images (count)",
                  ylabel="pre-trained minus scratch, max-F (0-1)", title=f"Gain from pre-training, {eff.level.iloc[0]:.0%} CI", ax=axes[1])
axes[1].axhline(0, color="0.3", lw=0.8)
study.savefig(fig, "data_efficiency")
eff

# %% [markdown]
# ## Explore: arms and training-set sizes
# Tick the arms to compare (every arm this run trained is listed: scratch, pre-trained, and the
# two controls: pre-trained on the same images with shuffled labels, and scratch trained for as
# many images as pre-training and fine-tuning see together), choose a
# training-set fraction and the curve to show. Left: learning curves; right: the test score
# of each arm against the number of training images, the chosen fraction circled.

# %%
viz.learning_panel(curves, res["final"])

# %% [markdown]
# ## What we found
# Rule fixed before the data (`sodlab.verdicts.pretraining`): the effect is pre-trained minus
# compute-matched scratch max-F with the full training set and its 90% paired bootstrap
# interval (the claim is that scratch catches up with enough training, so scratch gets the
# pre-training's images too), rule `equivalent` with margin 0.02: supported if the interval
# lies inside [-0.02, +0.02], **refuted if it lies entirely outside it**, otherwise
# inconclusive. Beside it: the unmatched gain, and pre-trained minus shuffled-label
# pre-training (a gain that survives shuffled labels comes from pre-training as such, not
# from knowing the categories).
# Gates first: the pre-training classifier at 0.90 top-1 on held-out images;
# every trained model at a plateau (gain under 0.005 over the last quarter of its
# epochs on a validation split) and selected on that split, not the test split; a failed or
# unevaluable gate leaves the outcome inconclusive. Quick mode never concludes.

# %%
display(res["controls"])
finding = verdicts.pretraining(res["final"], eff, classifiers=res["classifiers"], mode=study.mode, seeds=[0], controls=res["controls"],
                               **verdicts.training_evidence(res["training"]))
study.findings(finding, key_figure="data_efficiency.png")

# %% [markdown]
# ## Try this
# **Where would the curves cross?** Predict first: with less data, should pre-training help
# more or less? Read the gain at each fraction below (pre-trained minus scratch, max-F), then
# change `fraction` to the smallest one this mode ran and compare the two arms' last epochs.

# %%
fraction = max(S["fractions"])  # try min(S["fractions"])
last = curves[curves.fraction == fraction].sort_values("epoch").groupby("init").tail(1)
display(eff[["fraction", "n_train", "max_f_gain", "low", "high"]])
last[["init", "epoch", val_col]]
