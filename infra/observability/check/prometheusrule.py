#!/usr/bin/env python3
"""Writes infra/k8s/prometheusrule.yaml: the groups of infra/observability/rules.yaml wrapped in a
prometheus-operator PrometheusRule. Run it after every change of rules.yaml; infra/validate's
test_infra.py fails while the two differ.

    infra/observability/check/prometheusrule.py
"""

import yaml

import sources

OUT = sources.KIT.parent / "k8s" / "prometheusrule.yaml"
HEADER = """\
# Generated from infra/observability/rules.yaml by infra/observability/check/prometheusrule.py;
# do not edit (infra/validate fails while the two differ). Your Prometheus selects rules by label
# (its ruleSelector, e.g. `release: <name>` with kube-prometheus-stack): add that label here or in
# an overlay.
"""


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def document():
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "valkey-sessions",
            "namespace": "valkey-sessions",
            "labels": {"app.kubernetes.io/name": "valkey-sessions"},
        },
        "spec": {"groups": sources.load_rules()["groups"]},
    }


def main():
    OUT.write_text(HEADER + yaml.dump(document(), Dumper=Dumper, sort_keys=False, width=120))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
