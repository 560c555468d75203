{{/* Names. fullname is the release name when it already contains the chart name ("lastcall"). */}}
{{- define "lastcall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lastcall.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lastcall.webhookServiceName" -}}
{{- printf "%s-webhook" (include "lastcall.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lastcall.certSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "lastcall.fullname" .)) .Values.certificates.secretName }}
{{- end }}

{{- define "lastcall.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lastcall.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lastcall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lastcall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/*
The pods that serve /metrics (and the observer's /shutdowns): the webhook's, or in policy mode the policy
controller's. One Service name, <fullname>-metrics, in both modes, so `lastcall status` and a ServiceMonitor
find it the same way. metricsEnabled is "true" when such pods exist and metrics.service.enabled.
*/}}
{{- define "lastcall.metricsComponent" -}}
{{- if eq .Values.mode "policy" }}policy-controller{{ else }}webhook{{ end }}
{{- end }}

{{- define "lastcall.metricsEnabled" -}}
{{- if and .Values.metrics.service.enabled (or (eq .Values.mode "webhook") .Values.policyController.enabled) }}true{{ end }}
{{- end }}

{{- define "lastcall.metricsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "lastcall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "lastcall.metricsComponent" . }}
{{- end }}

{{- define "lastcall.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The policy file. Keys map 1:1 to .Values.policy; the webhook parses it strictly, so the schema keeps unknown
keys out. preStopSleep is always a string ("true", not true) because --set turns true into a boolean.
*/}}
{{- define "lastcall.policy" -}}
{{- $p := deepCopy .Values.policy }}
{{- $shim := $p.shim }}
{{- if not $shim.image }}
{{- $_ := set $shim "image" (printf "ghcr.io/lastcall-dev/lastcall-shim:%s" (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}
{{- $caps := $p.capabilities }}
{{- $_ := set $caps "preStopSleep" (toString $caps.preStopSleep) }}
{{- toYaml $p }}
{{- end }}
