"""The public Python API: load a trained model, classify the figures a program holds.

```python
import mitotype

classifier = mitotype.load()                      # the shipped model; or a model folder, a cv run, a tarball
result = classifier.predict("my_figures/", tta=True)   # arrays, PIL images, paths, a folder, lists of these
result.p_atypical, result.atypical, result.threshold   # numpy arrays and the threshold applied
```

``mitotype predict`` is built on these calls, so both give the same numbers. Importing this package does
not import torch or the training code.
"""

from mitotype.api.classifier import Classifier, Predictions, load
from mitotype.api.figures import FigureBatch, as_figures, read_figures

__all__ = ["Classifier", "FigureBatch", "Predictions", "as_figures", "load", "read_figures"]
