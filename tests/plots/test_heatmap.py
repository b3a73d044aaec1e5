import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from lit_rcqa.plots.heatmap import plot_jsd_heatmap


def test_heatmap_has_layer_ticks_title_colorbar_and_one_annotation_per_cell():
    names = ["embeddings", "layer_01", "layer_02"]
    m = np.array([[0.0, 0.25, 0.5], [0.25, 0.0, 0.125], [0.5, 0.125, 0.0]])
    fig = plot_jsd_heatmap(m, names, "JSD, all tokens")
    try:
        assert isinstance(fig, Figure)
        ax, cbar = fig.axes  # the heatmap and its colorbar
        assert ax.get_title() == "JSD, all tokens"
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert [t.get_text() for t in ax.get_yticklabels()] == names
        assert cbar.get_ylabel() == "JSD (bits)"
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
        assert len(ax.texts) == 9 and texts[(0, 2)] == "0.50" and texts[(2, 1)] == "0.12"
        np.testing.assert_array_equal(ax.images[0].get_array(), m)
        fig.canvas.draw()  # renders on Agg without a display
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="expected"):
        plot_jsd_heatmap(m, names[:2], "bad")
