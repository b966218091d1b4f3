"""The series an expression selects, read by a PromQL parser (promql-parser, a port of
Prometheus' own grammar), and Grafana's variables replaced so a dashboard query parses."""

import re

import promql_parser

# Grafana's variables in dashboard.json, each replaced by a value of the same PromQL type.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": "valkey-sessions",
    "$instance": ".*",
}


def substitute(expr):
    """`expr` with Grafana's variables replaced; an unknown variable is an error."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    left = re.findall(r"\$\{?\w+", expr)
    if left:
        raise ValueError(f"unknown Grafana variable {left[0]} in {expr!r}")
    return expr


def selectors(expr):
    """[(metric name, {label names matched})] of every series selector in `expr`."""
    found = []

    def visit(node):
        if not isinstance(node, promql_parser.VectorSelector):
            return
        matchers = list(node.matchers.matchers)
        for group in node.matchers.or_matchers:
            matchers += list(group)
        name = node.name
        labels = set()
        for matcher in matchers:
            if matcher.name != "__name__":
                labels.add(matcher.name)
            elif matcher.op == promql_parser.MatchOp.Equal:
                name = matcher.value
            else:
                raise ValueError(f"a regular expression on __name__ cannot be checked: {expr!r}")
        if not name:
            raise ValueError(f"a selector without a metric name: {expr!r}")
        found.append((name, labels))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def label_values_selector(query):
    """The series selector of a Grafana `label_values(selector, label)` variable query."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", query)
    if not match:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return match.group(1)
