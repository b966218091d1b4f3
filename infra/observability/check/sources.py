"""Every PromQL expression of the kit: the rules and the dashboard's panels and variables."""

import json
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent
KIT = HERE.parent
RULES = KIT / "rules.yaml"
DASHBOARD = KIT / "dashboard.json"


def load_rules(path=RULES):
    return yaml.safe_load(path.read_text())


def load_dashboard(path=DASHBOARD):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        duplicated = {k for k in keys if keys.count(k) > 1}
        if duplicated:
            raise ValueError(f"duplicate keys {sorted(duplicated)} in {path}")
        return dict(pairs)

    return json.loads(path.read_text(), object_pairs_hook=no_duplicates)


def rules(document):
    """Every rule of a rule file, with its group's name."""
    for group in document["groups"]:
        for rule in group["rules"]:
            yield group["name"], rule


def recorded(document):
    """Names the recording rules produce."""
    return {rule["record"] for _, rule in rules(document) if "record" in rule}


def panels(dashboard):
    """Every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard):
    """(panel, target) of every query target of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def expressions(rules_document, dashboard):
    """(where, expr) of every expression: rules, panel targets, and label_values variables; the
    dashboard's still hold Grafana variables (promql.substitute)."""
    for group, rule in rules(rules_document):
        yield f"rules.yaml {group} {rule.get('alert') or rule.get('record')}", rule["expr"]
    for panel, target in panel_queries(dashboard):
        yield f"dashboard.json panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            yield f"dashboard.json variable {variable['name']}", query
