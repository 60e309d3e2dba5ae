// Validate Prometheus Operator objects against the operator's CRD schemas, all in one process.
//
// stdin: a JSON list of Kubernetes objects. stdout: {"package": {name, version}, "results":
// [{kind, name, errors: ["<path> <message>", ...]}, ...]}, one result per object, in order.
// The schemas are the ajv validators @kubernetes-models/prometheus-operator generates from the
// operator's monitoring.coreos.com/v1 API (types, required fields, enums, patterns).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};
const require = createRequire(import.meta.url);
const pkg = require("@kubernetes-models/prometheus-operator/package.json");

function check(doc) {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (Model === undefined) {
    return [`no schema for apiVersion ${doc.apiVersion} kind ${doc.kind}`];
  }
  try {
    new Model(doc).validate();
    return [];
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    // ajv reports the same failure once per branch that reaches it; keep each once.
    return [...new Set(error.errors.map((e) => `${e.instancePath || "/"} ${e.message}`))];
  }
}

const docs = JSON.parse(readFileSync(0, "utf8"));
const results = docs.map((doc) => ({
  kind: doc.kind,
  name: doc.metadata?.name,
  errors: check(doc),
}));
process.stdout.write(JSON.stringify({ package: { name: pkg.name, version: pkg.version }, results }));
