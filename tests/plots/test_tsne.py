import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from lit_rcqa.plots.tsne import COLOURS, plot_tsne, plot_tsne_grid

POINTS = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 3.0], [4.0, 1.0]])
CATS = ["special", "question", "answer", "answer", "other"]
TOKENS = ["[CLS]", "who", "den", "##ver", "the"]


def test_plot_tsne_colours_by_category_and_labels_tokens():
    fig = plot_tsne(POINTS, CATS, TOKENS, "layer_06")
    try:
        assert isinstance(fig, Figure)
        (ax,) = fig.axes
        assert ax.get_title() == "layer_06"
        by_label = {c.get_label(): c for c in ax.collections}
        assert set(by_label) == {"special", "question", "answer", "other"}
        np.testing.assert_array_equal(by_label["answer"].get_offsets(), POINTS[[2, 3]])
        np.testing.assert_allclose(by_label["answer"].get_facecolor()[0][:3], to_rgba(COLOURS["answer"])[:3])
        assert sorted(t.get_text() for t in ax.texts) == sorted(TOKENS)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["answer", "question", "special", "other"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="expected points"):
        plot_tsne(POINTS, CATS[:2], TOKENS, "bad")


def test_plot_tsne_grid_one_panel_per_layer_and_blank_leftovers():
    names = ["embeddings", "layer_01", "layer_02", "layer_03", "layer_04"]
    fig = plot_tsne_grid([(POINTS + i, CATS, TOKENS) for i in range(5)], names, columns=3)
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 6
        assert [ax.get_title() for ax in fig.axes[:5]] == names
        assert not fig.axes[5].axison
        assert all(not ax.texts for ax in fig.axes)  # token labels off by default in the grid
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["answer", "question", "special", "other"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="one"):
        plot_tsne_grid([(POINTS, CATS, TOKENS)], names)
