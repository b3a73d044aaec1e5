import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from lit_rcqa.analysis.roles import ROLES, RoleTable
from lit_rcqa.plots.layers import plot_layer_series, plot_role_shares

NAMES = ["embeddings", "layer_01", "layer_02"]


def test_layer_series_one_line_per_series_with_labels():
    fig = plot_layer_series({"top-2 retained": [0.1, 0.2, 0.3], "top-2 removed": np.array([0.3, 0.2, 0.1])},
                            NAMES, ylabel="JSD (bits)", title="Mean JSD to the next layer")
    try:
        assert isinstance(fig, Figure)
        (ax,) = fig.axes
        assert [line.get_label() for line in ax.lines] == ["top-2 retained", "top-2 removed"]
        np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.3, 0.2, 0.1])
        assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
        assert ax.get_ylabel() == "JSD (bits)" and ax.get_title() == "Mean JSD to the next layer"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["top-2 retained", "top-2 removed"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="expected"):
        plot_layer_series({"x": [1.0, 2.0]}, NAMES, "y", "t")


def test_role_shares_plots_every_role_from_a_table_or_mapping():
    shares = np.array([[40.0, 30, 20, 10], [45, 30, 15, 10], [50, 30, 10, 10]])
    for table in (RoleTable(layers=NAMES, shares=shares), {r: shares[:, j] for j, r in enumerate(ROLES)}):
        fig = plot_role_shares(table, NAMES)
        try:
            (ax,) = fig.axes
            assert [line.get_label() for line in ax.lines] == list(ROLES)
            np.testing.assert_array_equal(ax.lines[2].get_ydata(), [20, 15, 10])
            assert "%" in ax.get_ylabel()
        finally:
            plt.close(fig)
