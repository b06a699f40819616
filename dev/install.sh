#!/usr/bin/env bash
# Builds or installs every part of the local stack, pinned in dev/versions.env and cached per
# version under $VTX_CACHE. Each part is skipped when its cache stamp exists.
# Usage: dev/install.sh [apt|go|kubernetes|coredns|helm|versitygw|kubo|kube-router|prometheus|pulsar|all]...
. "$(dirname "$0")/lib.sh"

# No DWARF from the compiler: every command is linked with -s -w, which drops it anyway.
export GOFLAGS="-mod=mod -gcflags=all=-dwarf=false"
export GOTOOLCHAIN=local
# The stack's own Go toolchain (install_go), whatever else the machine has.
export PATH="$GO_ROOT/bin:$PATH"

install_apt() {
  local missing=()
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt: installing ${missing[*]}"
  apt-get update -qq
  # The packages' own services are not wanted: the stack starts its servers itself.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# The Go toolchain from the Go module proxy: golang.org/toolchain is a module whose zip holds a
# whole Go distribution (the go command itself fetches it this way for GOTOOLCHAIN switches).
install_go() {
  have_stamp "go-$GO_VERSION" && [ -x "$GO_ROOT/bin/go" ] && return 0
  local mod="golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64"
  log "fetching Go $GO_VERSION from the Go module proxy ($mod)"
  local tmp
  mkdir -p "$VTX_CACHE"
  tmp=$(mktemp -d "$VTX_CACHE/go-fetch.XXXXXX")
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$GOPROXY_URL/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip" ||
    die "could not download $mod"
  echo "$GO_TOOLCHAIN_SHA256  $tmp/go.zip" | sha256sum -c --quiet - || die "$mod: the zip's SHA-256 is not the pinned one"
  unzip -q "$tmp/go.zip" -d "$tmp" || die "could not unpack $mod"
  # Module zips keep no file modes: the commands are made executable as the go command does.
  chmod -R u+w "$tmp/$mod"
  find "$tmp/$mod/bin" "$tmp/$mod/pkg/tool" -type f -exec chmod 755 {} +
  rm -rf "$GO_ROOT"; mv "$tmp/$mod" "$GO_ROOT"; rm -rf "$tmp"
  "$GO_ROOT/bin/go" version >/dev/null || die "the fetched Go does not run"
  put_stamp "go-$GO_VERSION"
}

build_kubernetes() {
  local stamp="kubernetes-$K8S_VERSION"
  have_stamp "$stamp" && have_stamp "helm-$HELM_VERSION" && return 0
  log "building Kubernetes $K8S_VERSION (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) and Helm $HELM_VERSION; ~7 min"
  local src="$VTX_CACHE/src/kubernetes-$K8S_VERSION"
  rm -rf "$src"; mkdir -p "$src" "$K8S_BIN"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  {
    echo "module vtx.dev/localstack/kubernetes"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # Helm uses client-go, the API types and kubectl's packages at this Kubernetes version: built
    # in this module, they compile once for both.
    echo "require helm.sh/helm/v3 $HELM_VERSION"
    echo "tool helm.sh/helm/v3/cmd/helm"
    echo
    # k8s.io/kubernetes lists its staging modules at v0.0.0; point each at its published tag.
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u |
      while read -r m; do echo "replace $m => $m $K8S_STAGING_VERSION"; done
  } >"$src/go.mod"
  local pkg
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    mkdir -p "$src/cmd/$b"
    case $b in
      kube-apiserver) pkg=kube-apiserver/app; fn='app.NewAPIServerCommand()' ;;
      kube-controller-manager) pkg=kube-controller-manager/app; fn='app.NewControllerManagerCommand()' ;;
      kube-scheduler) pkg=kube-scheduler/app; fn='app.NewSchedulerCommand()' ;;
      kube-proxy) pkg=kube-proxy/app; fn='app.NewProxyCommand()' ;;
    esac
    cat >"$src/cmd/$b/main.go" <<GO
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/$pkg"
)

func main() { os.Exit(cli.Run($fn)) }
GO
  done
  mkdir -p "$src/cmd/kubelet" "$src/cmd/kubectl" "$src/cmd/etcd"
  cat >"$src/cmd/kubelet/main.go" <<'GO'
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() { os.Exit(cli.Run(app.NewKubeletCommand(context.Background()))) }
GO
  cat >"$src/cmd/kubectl/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
	os.Exit(0)
}
GO
  cat >"$src/cmd/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  local v=k8s.io/component-base/version
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  (cd "$src" && go mod tidy && go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/" ./cmd/... helm.sh/helm/v3/cmd/helm) ||
    die "Kubernetes build failed (sources in $src)"
  mkdir -p "$HELM_BIN"; mv "$K8S_BIN/helm" "$HELM_BIN/helm"
  put_stamp "helm-$HELM_VERSION"
  put_stamp "$stamp"
}

# go_install NAME VERSION MODULE_PATH BIN_DIR: `go install` a pinned command into its cache folder.
go_install() {
  local name=$1 version=$2 path=$3 bindir=$4
  have_stamp "$name-$version" && return 0
  log "building $name $version"
  mkdir -p "$bindir"
  GOBIN="$bindir" go install -trimpath -ldflags "-s -w" "$path@$version" || die "$name build failed"
  put_stamp "$name-$version"
}

# module_source MODULE VERSION NAME: a writable copy of the module's source, out of the module
# cache, in $VTX_CACHE/src/NAME-VERSION (built with its own go.mod, replaces included); prints
# its path.
module_source() {
  local module=$1 version=$2 name=$3 dir
  dir=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$dir" ] || die "could not download $module@$version"
  local src="$VTX_CACHE/src/$name-$version"
  rm -rf "$src"; mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src"; chmod -R u+w "$src"
  echo "$src"
}

# CoreDNS with only the plugins the stack's Corefile (dev/node-config.sh) names, chosen as
# CoreDNS documents it: plugin.cfg trimmed, then `go generate`. The full set's cloud back ends
# (Route 53, Azure, Cloud DNS, etcd, ...) are most of its build.
COREDNS_PLUGINS="bind errors health ready kubernetes cache"
build_coredns() {
  have_stamp "coredns-$COREDNS_VERSION" && return 0
  log "building CoreDNS $COREDNS_VERSION (plugins: $COREDNS_PLUGINS)"
  local src
  src=$(module_source github.com/coredns/coredns "$COREDNS_VERSION" coredns)
  mkdir -p "$COREDNS_BIN"
  awk -F: -v keep=" $COREDNS_PLUGINS " '/^#/ || /^$/ || index(keep, " " $1 " ")' \
    "$src/plugin.cfg" >"$src/plugin.cfg.new" && mv "$src/plugin.cfg.new" "$src/plugin.cfg"
  (cd "$src" && go generate coredns.go && go build -trimpath -ldflags "-s -w" -o "$COREDNS_BIN/coredns" .) ||
    die "CoreDNS build failed"
  put_stamp "coredns-$COREDNS_VERSION"
}

build_kubo() {
  have_stamp "kubo-$KUBO_VERSION" && return 0
  log "building Kubo $KUBO_VERSION"
  local src
  src=$(module_source github.com/ipfs/kubo "$KUBO_VERSION" kubo)
  mkdir -p "$KUBO_BIN"
  # Only the datastores the stack's repository uses (flatfs, levelds) are preloaded, chosen as
  # Kubo documents it (plugin/loader/preload_list): no Git or JOSE codecs, no badger, no
  # blocklists, and no telemetry plugin (it would report to a server outside the machine).
  printf 'flatfs github.com/ipfs/kubo/plugin/plugins/flatfs *\nlevelds github.com/ipfs/kubo/plugin/plugins/levelds *\n' \
    >"$src/plugin/loader/preload_list"
  (cd "$src" && bash plugin/loader/preload.sh >plugin/loader/preload.go &&
    go build -trimpath -ldflags "-s -w" -o "$KUBO_BIN/ipfs" ./cmd/ipfs) || die "Kubo build failed"
  put_stamp "kubo-$KUBO_VERSION"
}

build_prometheus() {
  have_stamp "prometheus-$PROMETHEUS_VERSION" && return 0
  log "building Prometheus $PROMETHEUS_VERSION (prometheus, promtool; Kubernetes discovery only)"
  local src
  src=$(module_source github.com/prometheus/prometheus "$PROMETHEUS_VERSION" prometheus)
  mkdir -p "$PROMETHEUS_BIN"
  # The module has a go.work of its own; the tags leave out every service discovery but
  # Kubernetes' (cloud SDKs are most of the build). No web UI assets: the HTTP API is enough.
  # Module v0.316.0 is Prometheus 3.16.0.
  local minor=${PROMETHEUS_VERSION#v0.}; minor=${minor%%.*}
  local version="${minor:0:1}.$((10#${minor:1})).${PROMETHEUS_VERSION##*.}"
  (cd "$src" && GOWORK=off go build -trimpath -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
    -o "$PROMETHEUS_BIN/" ./cmd/prometheus ./cmd/promtool) || die "Prometheus build failed"
  put_stamp "prometheus-$PROMETHEUS_VERSION"
}

fetch_pulsar() {
  have_stamp "pulsar-$PULSAR_VERSION" && return 0
  log "fetching Pulsar $PULSAR_VERSION standalone from Maven Central"
  mkdir -p "$PULSAR_HOME"
  cat >"$PULSAR_HOME/pom.xml" <<XML
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.vtx.localstack</groupId>
  <artifactId>pulsar-standalone</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.pulsar</groupId><artifactId>pulsar-broker</artifactId><version>$PULSAR_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
XML
  (cd "$PULSAR_HOME" && mvn -q -B dependency:build-classpath -Dmdep.outputFile=classpath.txt) ||
    die "Pulsar classpath could not be resolved"
  put_stamp "pulsar-$PULSAR_VERSION"
}

# The Go commands besides Kubernetes, one after another.
build_tools() {
  timed coredns build_coredns
  timed versitygw go_install versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_BIN"
  timed kube-router go_install kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$KUBE_ROUTER_BIN"
  timed kubo build_kubo
}

# in_background NAME FUNCTION...: run it beside the foreground work, its output in a log file;
# wait_background reports each one's end and stops on a failure with the tail of its log.
BG_PIDS=() BG_NAMES=()
in_background() {
  local name=$1; shift
  mkdir -p "$VTX_CACHE/logs"
  ( export VTX_STAGE_BG=1; "$@" ) >"$VTX_CACHE/logs/install-$name.log" 2>&1 &
  BG_PIDS+=("$!"); BG_NAMES+=("$name")
}
wait_background() {
  local i failed=()
  for i in "${!BG_PIDS[@]}"; do
    wait "${BG_PIDS[$i]}" || failed+=("${BG_NAMES[$i]}")
  done
  for i in "${failed[@]}"; do
    printf -- '--- last 30 lines of %s ---\n' "$VTX_CACHE/logs/install-$i.log" >&2
    tail -n 30 "$VTX_CACHE/logs/install-$i.log" >&2
  done
  [ ${#failed[@]} -eq 0 ] || die "installing failed: ${failed[*]} (logs in $VTX_CACHE/logs)"
  BG_PIDS=() BG_NAMES=()
}

everything() {
  timed apt install_apt
  timed go install_go
  # Downloads wait on the network and builds on the two cores: run them side by side. Pulsar's
  # jars, and the images (base, wheels, and a first podman build, whose apt downloads are most
  # of it) come in the background while Kubernetes compiles in the foreground, and the other Go
  # commands build in a second line (their module downloads overlap Kubernetes' compile).
  local pending=()
  have_stamp "pulsar-$PULSAR_VERSION" || pending+=(pulsar)
  [ -s "$VTX_CACHE/images/debian-$DEBIAN_SUITE-minbase.tar" ] || pending+=(images)
  for t in "coredns-$COREDNS_VERSION" "versitygw-$VERSITYGW_VERSION" \
           "kube-router-$KUBE_ROUTER_VERSION" "kubo-$KUBO_VERSION"; do
    have_stamp "$t" || { pending+=(tools); break; }
  done
  [ ${#pending[@]} -gt 0 ] && log "in the background: ${pending[*]} (logs in $VTX_CACHE/logs/install-*.log)"
  in_background pulsar timed pulsar fetch_pulsar
  in_background images timed images-prefetch "$DEV_DIR/images.sh" prefetch
  in_background tools build_tools
  # Prometheus after Kubernetes in this line: the two lines then end at about the same time.
  timed kubernetes build_kubernetes
  timed prometheus build_prometheus
  wait_background
}

parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(all)
for part in "${parts[@]}"; do
  case $part in
    apt) timed apt install_apt ;;
    go) install_go ;;
    kubernetes) build_kubernetes ;;
    coredns) build_coredns ;;
    helm) build_kubernetes ;;  # built with Kubernetes
    versitygw) go_install versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_BIN" ;;
    kubo) build_kubo ;;
    kube-router) go_install kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$KUBE_ROUTER_BIN" ;;
    prometheus) build_prometheus ;;
    pulsar) fetch_pulsar ;;
    all) everything ;;
    *) die "unknown part: $part" ;;
  esac
done
