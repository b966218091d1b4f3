"""The metric names and labels the kit uses against those the service exports."""

from prometheus_client.parser import text_string_to_metric_families

import promql
import sources

# Added by Prometheus to every scraped series (job, instance) or by the Kubernetes service
# discovery of a ServiceMonitor (namespace, pod, container, service, endpoint).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint"}


def references(rules_document, dashboard):
    """{metric name: {"labels": label names matched, "where": [places]}} of every selector."""
    found = {}
    for where, expr in sources.expressions(rules_document, dashboard):
        if where.startswith("dashboard.json variable"):
            expr = promql.label_values_selector(expr)
        if where.startswith("dashboard.json"):
            expr = promql.substitute(expr)
        for name, labels in promql.selectors(expr):
            entry = found.setdefault(name, {"labels": set(), "where": []})
            entry["labels"] |= labels
            entry["where"].append(where)
    return found


def exposition(text):
    """{family name: {sample name: label names}} of a Prometheus text exposition; a counter's
    family keeps its `_total` (the parser drops it)."""
    out = {}
    for family in text_string_to_metric_families(text):
        samples = {}
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
        name = family.name + "_total" if family.name + "_total" in samples else family.name
        out.setdefault(name, {}).update(samples)
    return out


def compare(refs, exported, recorded):
    """Problems: a referenced name the service does not export (nor a rule records), a label it
    does not carry."""
    samples = {}
    for family in exported.values():
        samples.update(family)
    problems = []
    for name, ref in sorted(refs.items()):
        where = ref["where"][0] + (f" (+{len(ref['where']) - 1} more)" if len(ref["where"]) > 1 else "")
        if name in recorded:
            continue
        if name not in samples:
            problems.append(f"{name} is not exported by the service (used in {where})")
            continue
        unknown = ref["labels"] - samples[name] - TARGET_LABELS
        if unknown:
            problems.append(f"{name} has no label {', '.join(sorted(unknown))} (used in {where}); "
                            f"it has {', '.join(sorted(samples[name])) or 'none'}")
    return problems


def unused_families(exported, dashboard_refs):
    """Exported metric families no dashboard panel shows."""
    return sorted(family for family, samples in exported.items()
                  if not set(samples) & set(dashboard_refs))
