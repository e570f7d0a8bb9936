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
# # 2. CSNet anatomy: where 100K parameters go
#
# **Claim (d), the architectural side.** CSNet detects salient objects with about a hundred
# thousand parameters, hundreds of times fewer than the ResNet-style backbones SOD models usually
# build on, by spreading channels over two resolutions (gOctConv) and letting training decide how
# many each block, scale and dilation keeps.
#
# This notebook trains nothing: it counts. It tabulates parameters and multiply-accumulates
# (MACs) of the CSNet widths, the authors' learned CSNet-L-x1/x2 and CSF+Res2Net, and reads the
# learned channel allocation of the released CSNet-L configurations (per block, per scale, per
# dilation of the CSF head). The claim would fail if CSNet-L needed a parameter budget within
# an order of magnitude of CSF+Res2Net, or if the learned configurations kept the initial
# uniform allocation (then "learned channel numbers" would mean nothing).
#
# MACs follow `sodlab.profiling`'s convention (convolutions and matrix products actually
# executed, counted by `torch.utils.flop_counter`); papers count differently, so compare ratios.
#
# **New here?** Salient object detection (SOD) outputs a map: for every pixel, how much it
# belongs to the object that stands out (0-1). Classification outputs one label per image. The
# later notebooks train CSNet for saliency next to its *classification twin* (the same encoder
# with a class head) to ask how different the two tasks are; the figure below shows the two
# answers on the same images. Here we only count what CSNet is made of. A *block* is one
# layer of the encoder (names `stage.block`); each block's channels are split between two
# *scales*, the full-resolution feature map and a half-resolution one. Parameters are the
# learned weights (a count); MACs are the multiply-accumulate operations of one image.

# %% tags=["parameters"]
mode = "quick"
data_root = None
device = "auto"
results_dir = None
slim_checkpoint = None  # a slim CSNet of yours (e.g. from `sodlab prune`) to show in the explorer

# %%
import pandas as pd

from sodlab import experiments as ex
from sodlab import verdicts, viz
from sodlab.studies import start_study

SIZES = {
    "quick": dict(widths=(8, 20), input_sizes=(224,)),
    "standard": dict(widths=(8, 12, 16, 20, 32), input_sizes=(224, 352)),
    "full": dict(widths=(8, 12, 16, 20, 32, 48), input_sizes=(224, 352)),
}
study = start_study("02_anatomy", mode, SIZES, data_root=data_root, device=device, results_dir=results_dir,
                    needs_data=False)
S = study.sizes

# %%
viz.task_primer(study.sample_data());

# %% [markdown]
# ## Parameters and MACs
# `csnet width=W` is the unpruned CSNet with base width W and an even full/half-resolution split;
# CSNet-L-x1/x2 are the authors' learned (pruned, then widened) configurations.

# %%
models = [("csnet", {"width": w}) for w in S["widths"]] + ["csnet-L-x1", "csnet-L-x2", "csf-res2net50"]
anatomy = study.cached(ex.anatomy_table, models, sizes=S["input_sizes"])
study.save_table(anatomy, "params_macs")
anatomy.assign(params_k=anatomy.params / 1e3).round(3)

# %%
at = anatomy[anatomy["size"] == 224].copy()
fig = viz.scatter_plot(at, x="params", y="gmacs", hue="model", xlabel="parameters (count, log scale)",
                       ylabel="GMACs per 224x224 image (log scale)", title="Model size vs compute")
ax = fig.axes[0]
ax.set_xscale("log")
ax.set_yscale("log")
for r in at.itertuples():
    ax.annotate(r.model, (r.params, r.gmacs), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.legend().remove()
study.savefig(fig, "params_vs_macs")

# %% [markdown]
# ## Learned allocation of the released CSNet-L configurations
# Channels per block and scale (scale 0 = full resolution, 1 = half), and per dilation in the
# CSF head, next to the unpruned width-20 CSNet they were learned from.

# %%
alloc = pd.concat(
    [ex.allocation_table(name).assign(model=name) for name in ("csnet", "csnet-L-x1", "csnet-L-x2")],
    ignore_index=True,
)
study.save_table(alloc, "allocation")
alloc.head(12)

# %%
blocks = alloc[alloc["kind"] == "block"] if "kind" in alloc else alloc
pivot = blocks.pivot_table(index="block", columns=["model", "scale"], values="channels", aggfunc="sum", sort=False)
fig = viz.heatmap(pivot, xlabel="model, scale (0 = full, 1 = half resolution)", ylabel="block",
                  cbar_label="output channels (count)", fmt=".0f", figsize=(7, 7.5), rotate=30,
                  title="Channels per block and scale")
study.savefig(fig, "allocation_heatmap")

# %%
dil = alloc[alloc["kind"] == "dilation"] if "kind" in alloc else alloc.iloc[0:0]
if len(dil):
    fig = viz.bar_plot(dil.groupby(["model", "dilation"], as_index=False)["channels"].sum(), x="dilation", y="channels",
                       hue="model", xlabel="dilation of the CSF head's branch", ylabel="channels (count, both scales)",
                       title="CSF head: channels per dilation")
    study.savefig(fig, "allocation_dilations")

# %% [markdown]
# ## Explore: a configuration's channels
# Choose a model: the unpruned CSNet (width 20, every block split evenly between the scales),
# the authors' learned CSNet-L-x1 and L-x2, or a slim model of yours (the parameter
# `slim_checkpoint`: a file `sodlab prune` wrote). "channels" stacks each
# block's full- and half-resolution channels (outline: the unpruned model); "share kept" shows
# what fraction of the unpruned channels each block and scale keeps.

# %%
import sodlab

choices = {"unpruned (width 20)": sodlab.create_model("csnet", width=20), "CSNet-L-x1": sodlab.create_model("csnet-L-x1"),
           "CSNet-L-x2": sodlab.create_model("csnet-L-x2")}
if slim_checkpoint is not None:
    choices["your slim model"] = sodlab.load(slim_checkpoint)
viz.allocation_panel(choices, reference=choices["unpruned (width 20)"])

# %% [markdown]
# ## What we found
# A verdict that can fail, not a description: the effect is the spread (standard deviation over
# blocks) of the share of each encoder block's channels CSNet-L-x1 keeps, rule `greater` with
# margin 0.10: supported if it is above 0.10, **refuted if it is below 0.10** (a uniform
# multiplier keeps every block alike). The configurations are counted, not sampled, so the
# interval is the point itself and no gate applies; quick mode still never concludes.

# %%
finding = verdicts.anatomy(at, blocks, mode=study.mode)
study.findings(finding, key_figure="allocation_heatmap.png", exact=True)

# %% [markdown]
# ## Try this
# **Double the width.** CSNet's convolutions are mostly 1x1 and depthwise, so how do its
# parameters grow with the width? Predict first: going from width 20 (210,985 parameters) to 40,
# do the parameters double, quadruple, or something in between? Then run it, and try other
# widths or an input side of 352.

# %%
width = 40  # change this
sodlab.profile(sodlab.create_model("csnet", width=width), size=224)
