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
# # 6. Feature redundancy: does SOD need fewer parameters than classification?
#
# **Claim (d).** Salient object detection needs far fewer parameters than classification:
# shrinking the network costs SOD little and classification a lot, and an SOD network's
# features are more redundant (fewer effective dimensions per layer, more prunable channels).
#
# **Protocol (ours).** For each encoder width, train the study model for saliency
# (`csf-res2net-mini`: a Res2Net backbone with the CSF head, as the paper's CSF+Res2Net at CPU
# size) and its classification twin (`res2net-mini`: the same backbone, the same initial
# weights, a class head) on the same images with the same augmentation (the twin on their
# category labels; standard mode generates 12,000 training images, what the classifier needs). Compare how each task's metric falls as the width shrinks:
# the share of its widest model's lead over the task's floor (centre-bias guess; chance) that
# a narrower model keeps. At the widest width, measure per layer: the PCA spectrum and
# effective rank of the activations (on test images), the mean absolute correlation between
# channels, CKA between layers within each network and between the two twins, and the share of
# channels whose batch-norm scale training pushed towards zero (with a regulariser when one is
# given; the study model's recipes have none).
#
# The claim fails if SOD loses as large a share of its performance as classification when the
# width shrinks, and its layers are no more redundant.
#
# **New here?** Salient object detection (SOD) outputs a map: for every pixel, how much it
# belongs to the object that stands out (0-1). Classification outputs one category name per
# image; the figure below shows both on the same images. The *classification twin* is the
# same encoder with a class head, trained from the same starting weights. *Width* is the
# number of channels of the encoder's first stage (the later stages double it). A layer is
# *redundant* when its channels repeat each other: few principal components explain its
# activations (low effective rank) and its channels correlate. *CKA* (0-1) measures how alike
# two layers' representations are on the same images (1: the same up to a rotation).

# %% tags=["parameters"]
mode = "quick"
data_root = None
device = "auto"
results_dir = None
seeds = None  # None: the mode's seeds; e.g. (0, 1) runs only those (a later run with more seeds reuses their models)

# %%
import matplotlib.pyplot as plt
from IPython.display import display

from sodlab import experiments as ex
from sodlab import verdicts, viz
from sodlab.studies import TWIN_BENCHMARK, start_study

# The twins at each width: csf-res2net-mini (saliency, `epochs`) and res2net-mini
# (classification, `cls_epochs`), one initial encoder, the same images and
# augmentation. The widest pair of standard mode is notebook 07's (shared models).
SIZES = {
    "quick": dict(twins="res2net-mini", widths=(4, 8), epochs=1, cls_epochs=1, image_size=64, batch_size=16, n_images=32,
                  seeds=(0, 1), schedule_check=True),
    "standard": dict(twins="res2net-mini", widths=(4, 8, 16), epochs=32, cls_epochs=80, image_size=64, batch_size=16, n_images=128,
                     seeds=(0, 1, 2), schedule_check=True),
    "full": dict(twins="res2net-mini", widths=(4, 8, 16, 24, 32), epochs=25, cls_epochs=40, image_size=224, batch_size=32, n_images=256,
                 seeds=(0, 1, 2), schedule_check=True),
}
# standard mode's built-in benchmark: 12,000 training images (the classifiers' gate needs them)
BENCHMARK = {"standard": TWIN_BENCHMARK}
study = start_study("06_redundancy", mode, SIZES, data_root=data_root, device=device, results_dir=results_dir,
                    benchmark=BENCHMARK.get(mode), overrides=None if seeds is None else {"seeds": tuple(seeds)})
S = study.sizes
viz.task_primer(study.sample_data());
S

# %%
print(study.device_note())
res = study.cached(
    ex.redundancy_study, study.data_root, twins=S["twins"], widths=S["widths"], epochs=S["epochs"], cls_epochs=S["cls_epochs"],
    image_size=S["image_size"], seeds=S["seeds"], device=study.device, work_dir=study.work_dir, model_store=study.model_store,
    n_images=S["n_images"], batch_size=S["batch_size"], schedule_check=S["schedule_check"],
)
for name, df in res.items():
    study.save_table(df, name)
res["width_sweep"]

# %% [markdown]
# ## Performance against parameters
# Left, the raw metrics. Right, each task's lead over its *floor*, the score of a model that
# learnt nothing (SOD: the centre-bias guess on the same test images; classification: chance),
# as a share of its widest model's lead (1 = as good as the widest, 0 = no better than the
# floor), so that max-F and accuracy share one axis without crediting SOD with the score a
# centre blob gets for free.

# %%
sweep = ex.seed_mean(res["width_sweep"], ["width", "task", "metric"])  # the seeds' mean
main = ex.task_scores(sweep)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
viz.metric_curves(main, x="params", y="value", hue="task", logx=True, xlabel="parameters (count, log scale)",
                  ylabel="max-F (SOD) / accuracy (classification), 0-1", title="Task metric", ax=axes[0])
viz.metric_curves(main, x="params", y="above_floor", hue="task", logx=True, xlabel="parameters (count, log scale)",
                  ylabel="(metric - floor) / (widest - floor)", title="Lead over the floor, relative to the widest", ax=axes[1])
study.savefig(fig, "width_sweep")

# %% [markdown]
# ## Redundancy per layer

# %%
layers = res["layers"]
wmax = max(S["widths"])
lw = layers[layers.width == wmax]
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
viz.bar_plot(lw, x="layer", y="effective_rank_ratio", hue="task", xlabel="layer",
             ylabel="effective rank / channels (0-1)", title=f"Effective dimensionality (width {wmax})", ax=axes[0])
viz.bar_plot(lw, x="layer", y="mean_abs_corr", hue="task", xlabel="layer",
             ylabel="mean |correlation| between channels (0-1)", title="Channel correlation", ax=axes[1])
study.savefig(fig, "layer_redundancy")

# %%
sp = res["spectra"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained", sharey=True)
for ax, (task, g) in zip(axes, sp.groupby("task", sort=False)):
    viz.metric_curves(g, x="component", y="explained_variance_ratio", hue="layer", xlabel="principal component (rank)",
                      ylabel="explained variance (fraction)", title=f"PCA spectrum: {task}", ax=ax)
    ax.set_yscale("log")
study.savefig(fig, "pca_spectra")

# %% [markdown]
# ## CKA: within each network and between the twins

# %%
cka = res["cka_layers"]
tasks = list(dict.fromkeys(cka.task))
fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.2), layout="constrained")
for ax, task in zip(axes, tasks):
    m = cka[cka.task == task].pivot_table(index="layer_a", columns="layer_b", values="cka", sort=False)
    ylabel, xlabel = ("SOD layer", "classifier layer") if task == "sod_vs_classification" else (f"{task} layer", f"{task} layer")
    viz.heatmap(m, xlabel=xlabel, ylabel=ylabel, cbar_label="linear CKA (0-1)", vmin=0, vmax=1, title=task, ax=ax)
study.savefig(fig, "cka")
res["cka_twins"]

# %% [markdown]
# How alike is "alike"? The twins' CKA means little on its own: below, at the largest width,
# each trained network against its own initial weights (how far training moved a layer) and
# against a second network of the same task trained from another seed (how alike two runs of
# one task come out). Twins as alike as two seeds of one task learnt the same representation;
# twins much less alike than that learnt different ones.

# %%
res["cka_baselines"].pivot_table(index="layer", columns="comparison", values="cka", sort=False).round(3)

# %% [markdown]
# ## Channels switched off

# %%
prn = res["pruning"]
fig = viz.bar_plot(prn[prn.width == wmax].assign(threshold=lambda d: d.threshold.map("{:g}".format)), x="threshold",
                   y="frac_channels_below", hue="task", xlabel="|gamma| threshold (fraction of the block's largest)",
                   ylabel="share of channels below (0-1)", title=f"Prunable channels, width {wmax}")
study.savefig(fig, "prunable_channels")

# %% [markdown]
# ## Explore: one layer, one width
# Pick a layer and a width: the width sweep marks that width, the bars give the layer's
# redundancy in both twins at that width, the CKA curve how alike the twins' layer is at each
# width, and the spectrum (widest model) how fast its variance is used up.

# %%
viz.redundancy_panel(main, res["layers"], res["cka_twins"], res["spectra"])

# %% [markdown]
# ## What we found
# Rule fixed before the data (`sodlab.verdicts.redundancy`): the effect is the share of its
# widest model's lead over its floor SOD keeps at the narrowest width minus the share
# classification keeps, rule `greater` with margin 0.02: supported if its 90% interval lies
# above +0.02, **refuted if it lies entirely below +0.02**, otherwise inconclusive. The effect
# is the mean of the seeds' effects (each seed a full width sweep of twins from its own initial
# weights); its interval a two-level bootstrap over the seeds and, within each, the test images
# (the same images for both tasks and every width; the floors stay fixed). The descriptive
# tables (layers, spectra, CKA, gammas) are the first seed's.
# Gates first: the widest classifier of every seed at 0.90 top-1 on held-out images; each
# task's widest model at least 0.05 above its floor (seeds' mean);
# every trained model of every seed at a plateau on a validation split (gain under 0.005 over the
# last quarter of its epochs: for the first seed's twins, against the same recipe trained
# without that quarter; the run's own last quarter otherwise) and selected on that split, not the test split; a failed or
# unevaluable gate leaves the outcome inconclusive. Quick mode never concludes.

# %%
display(res["retention"], res["retention_stats"])
finding = verdicts.redundancy(res, mode=study.mode, seeds=S["seeds"], **verdicts.training_evidence(res["training"]))
study.findings(finding, key_figure="width_sweep.png")

# %% [markdown]
# ## Try this
# **How redundant is a layer of noise?** Predict first: the effective rank of random,
# independent channels, relative to their number: near 0, near 0.5 or near 1? Then run the cell;
# make the channels copies of each other (`copies = True`) and predict again.

# %%
import torch

from sodlab.analysis import redundancy as red

copies = False  # change this
noise = torch.randn(S["n_images"], 32, 8, 8)
if copies:
    noise = noise[:, :1].repeat(1, 32, 1, 1) + 0.01 * torch.randn_like(noise)
red.layer_redundancy({"noise": noise}, seed=0)
