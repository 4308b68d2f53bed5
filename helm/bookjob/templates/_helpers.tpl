{{/* Names, labels and references shared by the templates. */}}

{{- define "bookjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object: the release name when it contains the chart name. */}}
{{- define "bookjob.fullname" -}}
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

{{- define "bookjob.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bookjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bookjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bookjob.labels" -}}
helm.sh/chart: {{ include "bookjob.chart" . }}
{{ include "bookjob.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bookjob
{{- end }}

{{- define "bookjob.serviceAccountName" -}}
{{- default (printf "%s-workflow" (include "bookjob.fullname" .)) .Values.serviceAccount.name }}
{{- end }}

{{- define "bookjob.semaphoreConfigMap" -}}
{{- printf "%s-gpu-semaphore" (include "bookjob.fullname" .) }}
{{- end }}

{{- define "bookjob.artifactRepositoryConfigMap" -}}
{{- default (printf "%s-artifact-repository" (include "bookjob.fullname" .)) .Values.artifactRepository.existingConfigMap }}
{{- end }}

{{- define "bookjob.notifySecret" -}}
{{- default (printf "%s-notify" (include "bookjob.fullname" .)) .Values.notify.existingSecret }}
{{- end }}

{{/* An image reference: (list $ .Values.images.gpu) -> registry/repository:tag or @digest. */}}
{{- define "bookjob.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $ref := $image.repository }}
{{- with $root.Values.images.registry }}
{{- $ref = printf "%s/%s" (trimSuffix "/" .) $image.repository }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $ref $image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The S3 endpoint as a URL for the AWS SDKs (AWS_ENDPOINT_URL_S3). */}}
{{- define "bookjob.s3EndpointURL" -}}
{{- if .Values.s3.endpoint }}
{{- if or (hasPrefix "http://" .Values.s3.endpoint) (hasPrefix "https://" .Values.s3.endpoint) }}
{{- .Values.s3.endpoint }}
{{- else }}
{{- printf "%s://%s" (ternary "http" "https" .Values.s3.insecure) .Values.s3.endpoint }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment of every step container beyond the pipeline's own: S3 access, the job
     records' URL, ComfyUI timeout, extraEnv. Empty with the default values. */}}
{{- define "bookjob.stepEnv" -}}
{{- $env := list }}
{{- with include "bookjob.s3EndpointURL" . }}
{{- $env = append $env (dict "name" "AWS_ENDPOINT_URL_S3" "value" .) }}
{{- end }}
{{- with .Values.s3.region }}
{{- $env = append $env (dict "name" "AWS_REGION" "value" .) }}
{{- end }}
{{- with .Values.s3.existingSecret }}
{{- $env = append $env (dict "name" "AWS_ACCESS_KEY_ID" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $.Values.s3.accessKeyKey))) }}
{{- $env = append $env (dict "name" "AWS_SECRET_ACCESS_KEY" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $.Values.s3.secretKeyKey))) }}
{{- end }}
{{- with .Values.records.existingSecret }}
{{- $env = append $env (dict "name" "BOOKJOB_RECORDS" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $.Values.records.urlKey))) }}
{{- end }}
{{- with .Values.backends.comfyui.timeoutSeconds }}
{{- $env = append $env (dict "name" "BOOKJOB_COMFYUI_TIMEOUT" "value" (toString .)) }}
{{- end }}
{{- $env = concat $env .Values.extraEnv }}
{{- if $env }}
{{- toYaml $env }}
{{- end }}
{{- end }}

{{/* podSpecPatch that gives Argo's init and wait containers executor.securityContext. */}}
{{- define "bookjob.podSpecPatch" -}}
{{- $sc := .Values.executor.securityContext }}
{{- dict "initContainers" (list (dict "name" "init" "securityContext" $sc)) "containers" (list (dict "name" "wait" "securityContext" $sc)) | toJson }}
{{- end }}

{{/* Objects rendered into the `default` namespace (offline `helm template` without -n) tell
     checkov why: the namespace is the release's. checkov reads a suppression of a Kubernetes
     object from its annotations, the reason after the `=`. In any other namespace nothing is
     added and CKV_K8S_21 runs (and passes). */}}
{{- define "bookjob.annotations" -}}
{{- if eq .Release.Namespace "default" -}}
checkov.io/skip1: "CKV_K8S_21=namespace is the release namespace chosen at install (helm install -n NS)"
{{- end }}
{{- end }}
