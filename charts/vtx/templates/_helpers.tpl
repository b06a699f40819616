{{/* Name of the chart, or nameOverride. */}}
{{- define "vtx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: fullnameOverride, else <release>-<chart> (once if equal). */}}
{{- define "vtx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "vtx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "vtx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vtx
{{- end -}}

{{- define "vtx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vtx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "vtx.componentLabels" -}}
{{ include "vtx.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vtx.componentSelector" -}}
{{ include "vtx.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vtx.apiName" -}}{{ include "vtx.fullname" . }}-api{{- end -}}
{{- define "vtx.operatorName" -}}{{ include "vtx.fullname" . }}-operator{{- end -}}
{{- define "vtx.jobrunnerName" -}}{{ include "vtx.fullname" . }}-jobrunner{{- end -}}
{{- define "vtx.configName" -}}{{ include "vtx.fullname" . }}-config{{- end -}}

{{/* The peering object's name: the operator looks it up by this name. */}}
{{- define "vtx.peeringName" -}}vtx{{- end -}}

{{- define "vtx.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "vtx.jobImage" -}}
{{ .Values.jobrunner.image.repository }}:{{ .Values.jobrunner.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* True ("true") when the operator watches the whole cluster. */}}
{{- define "vtx.clusterwide" -}}
{{- if has "*" .Values.operator.watchNamespaces -}}
{{- if gt (len .Values.operator.watchNamespaces) 1 -}}
{{- fail "operator.watchNamespaces: \"*\" (the whole cluster) cannot be combined with namespace names" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches, as a JSON list: the release namespace first, then
     operator.watchNamespaces; only the release namespace when cluster-wide. */}}
{{- define "vtx.watchedNamespaces" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- if not (include "vtx.clusterwide" .) -}}
{{- range .Values.operator.watchNamespaces -}}
{{- $namespaces = append $namespaces . -}}
{{- end -}}
{{- end -}}
{{- $namespaces | uniq | toJson -}}
{{- end -}}

{{/* VTX_JOB_SECRET_ENV: job pods read each credential from its Secret key. */}}
{{- define "vtx.jobSecretEnv" -}}
{{- $s := .Values.secrets -}}
{{- $refs := list -}}
{{- range $var, $ref := dict "VTX_DATABASE_URL" $s.databaseUrl "VTX_S3_ACCESS_KEY" $s.s3AccessKey "VTX_S3_SECRET_KEY" $s.s3SecretKey "VTX_PULSAR_URL" $s.pulsarUrl "VTX_IPFS_API_TOKEN" $s.jobIpfsApiToken "VTX_PULSAR_TOKEN" $s.pulsarToken -}}
{{- if $ref.name -}}
{{- $refs = append $refs (printf "%s=%s/%s" $var $ref.name $ref.key) -}}
{{- end -}}
{{- end -}}
{{- join "," $refs -}}
{{- end -}}

{{/* One environment variable read from a Secret key: (dict "name" VAR "ref" {name, key}). */}}
{{- define "vtx.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ .ref.key }}
{{- end -}}

{{/* The credentials both components need, from Secret keys. */}}
{{- define "vtx.serverSecretEnv" -}}
{{ include "vtx.secretEnv" (dict "name" "VTX_DATABASE_URL" "ref" .Values.secrets.databaseUrl) }}
{{ include "vtx.secretEnv" (dict "name" "VTX_S3_ACCESS_KEY" "ref" .Values.secrets.s3AccessKey) }}
{{ include "vtx.secretEnv" (dict "name" "VTX_S3_SECRET_KEY" "ref" .Values.secrets.s3SecretKey) }}
{{ include "vtx.secretEnv" (dict "name" "VTX_PULSAR_URL" "ref" .Values.secrets.pulsarUrl) }}
{{- if .Values.secrets.ipfsApiToken.name }}
{{ include "vtx.secretEnv" (dict "name" "VTX_IPFS_API_TOKEN" "ref" .Values.secrets.ipfsApiToken) }}
{{- end }}
{{- if .Values.secrets.pulsarToken.name }}
{{ include "vtx.secretEnv" (dict "name" "VTX_PULSAR_TOKEN" "ref" .Values.secrets.pulsarToken) }}
{{- end }}
{{- end -}}

{{/* Pod security context of every vtx pod: the images' non-root user. */}}
{{- define "vtx.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "vtx.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Annotation that changes whenever the settings do, so `helm upgrade` rolls the pods. */}}
{{- define "vtx.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}
