"""The analyses of stored IG records. Importing the package registers the built-in analyses (`registry`), in the
order of their report sections: the chosen ones, then the always-on completeness section and examples table."""

from lit_rcqa.analysis import (divergence, roles, quantifiers, embeddings, flips, evidence, highlights,  # noqa: F401
                               completeness, examples)
