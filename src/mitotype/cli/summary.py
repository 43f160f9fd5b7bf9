"""The per-domain table that ``cv``, ``evaluate`` and ``demo`` print: balanced accuracy with its interval,
sensitivity, specificity and ROC AUC per held-out domain, then the mean over domains and the pooled figures."""

from __future__ import annotations


def metric_text(value: float | None) -> str:
    """A metric as the tables print it: three decimals, ``n/a`` where it is undefined."""
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(results: dict) -> None:
    s = results["summary"]
    # sensitivity and specificity beside balanced accuracy: a threshold that misses one domain shows at a glance
    print(f"{'held-out domain':<28} {'n':>6} {'AMF':>5} {'bal.acc':>8} {'95% CI':>13} {'sens':>6} {'spec':>6} "
          f"{'AUC':>6}")
    for name, d in s["per_domain"].items():
        ci = (d.get("ci") or {}).get("balanced_accuracy")
        ci_s = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
        print(f"{name[:28]:<28} {d['n']:>6} {d['n_pos']:>5} {metric_text(d['balanced_accuracy']):>8} {ci_s:>13} "
              f"{metric_text(d.get('sensitivity')):>6} {metric_text(d.get('specificity')):>6} "
              f"{metric_text(d.get('roc_auc')):>6}")
    pooled = s["pooled"]
    print(f"mean ± sd over domains: {metric_text(s['domain_mean'])} ± {metric_text(s['domain_std'])}   "
          f"pooled: {metric_text(pooled['balanced_accuracy'])} (sens {metric_text(pooled.get('sensitivity'))}, "
          f"spec {metric_text(pooled.get('specificity'))}, AUC {metric_text(pooled.get('roc_auc'))})")
