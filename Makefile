# Image URL to use all building/pushing image targets
IMG ?= ghcr.io/xen-operator/xen-operator:latest

# Kubernetes version of the API server used by envtest, the local control plane and the demo.
ENVTEST_K8S_VERSION ?= 1.37.2

# The xapi datamodel the simulator is checked against (`make conformance`).
XENAPI_DATAMODEL ?= ../shared/xenapi/xenapi.json

# Get the currently used golang install path (in GOPATH/bin, unless GOBIN is set)
ifeq (,$(shell go env GOBIN))
GOBIN=$(shell go env GOPATH)/bin
else
GOBIN=$(shell go env GOBIN)
endif

# CONTAINER_TOOL defines the container tool to be used for building images.
CONTAINER_TOOL ?= docker

# Setting SHELL to bash allows bash commands to be executed by recipes.
# Options are set to exit when a recipe line exits non-zero or a piped command fails.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS ?= -X github.com/xen-operator/xen-operator/internal/version.Version=$(VERSION)

.PHONY: all
all: build

##@ General

# The help target prints out all targets with their descriptions organized
# beneath their categories. The categories are represented by '##@' and the
# target descriptions by '##'.
.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs, RBAC and webhook manifests from the kubebuilder markers.
	"$(CONTROLLER_GEN)" rbac:roleName=manager-role crd paths="./api/..." paths="./internal/..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/gen-chart

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods, and the simulator's datamodel tables from XENAPI_DATAMODEL.
	"$(CONTROLLER_GEN)" object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	@if [ -f "$(XENAPI_DATAMODEL)" ]; then \
		go run ./hack/gen-datamodel --datamodel "$(XENAPI_DATAMODEL)" --out internal/xapisim/zz_generated.datamodel.go; \
	else \
		echo "XENAPI_DATAMODEL=$(XENAPI_DATAMODEL) not found: keeping internal/xapisim/zz_generated.datamodel.go as committed"; \
	fi

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (config in .golangci.yml).
	"$(GOLANGCI_LINT)" run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply the fixes it can.
	"$(GOLANGCI_LINT)" run --fix

.PHONY: verify
verify: manifests generate fmt ## Regenerate code and manifests (and tidy go.mod), fail if that changes anything tracked or if git tracks a binary.
	hack/check-tracked-files.sh
	go mod tidy
	@changed="$$(git diff --name-only -- $(VERIFY_PATHS); git ls-files --others --exclude-standard -- $(VERIFY_PATHS))"; \
	if [ -n "$$changed" ]; then \
		echo "Generated files are out of date; run 'make manifests generate fmt', 'go mod tidy' and commit the result:"; \
		echo "$$changed"; \
		git --no-pager diff --stat -- $(VERIFY_PATHS); \
		exit 1; \
	fi
	@echo "Generated files are up to date"

# What `make verify` regenerates and checks.
VERIFY_PATHS = api charts config internal cmd hack test go.mod go.sum

# Packages run by `go test`: everything except the end-to-end suites, which need built binaries.
UNIT_PKGS = $(shell go list ./... | grep -v /test/e2e)

.PHONY: test
test: manifests generate fmt vet envtest build helm kustomize ## Run every test: unit tests, envtest suites, end-to-end suites, the fault-injection suite at CI size.
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" \
		go test -race -count=1 $(UNIT_PKGS) -coverprofile cover.out
	$(MAKE) --no-print-directory test-e2e-only
	$(MAKE) --no-print-directory chaos-only CHAOS_N=$(CHAOS_CI_N) CHAOS_ARGS="$(CHAOS_CI_ARGS)"

.PHONY: test-e2e
test-e2e: envtest build helm kustomize ## Run only the end-to-end suites (Helm, kubectl, bin/manager, bin/xapi-simulator).
	$(MAKE) --no-print-directory test-e2e-only

.PHONY: test-e2e-only
test-e2e-only:
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" \
		go test -count=1 -timeout 20m ./test/e2e/ -ginkgo.v

.PHONY: helm-lint
helm-lint: helm ## Lint and render the Helm chart with its default and non-default values.
	"$(HELM)" lint --strict --kube-version $(ENVTEST_K8S_VERSION) charts/xen-operator
	"$(HELM)" lint --strict --kube-version $(ENVTEST_K8S_VERSION) charts/xen-operator --values charts/xen-operator/ci/non-default-values.yaml
	"$(HELM)" template xen-operator charts/xen-operator --namespace xen-operator-system --kube-version $(ENVTEST_K8S_VERSION) >/dev/null
	"$(HELM)" template xen-operator charts/xen-operator --namespace xen-operator-system --kube-version $(ENVTEST_K8S_VERSION) \
		--values charts/xen-operator/ci/non-default-values.yaml >/dev/null
	@echo "The chart lints and renders with default and non-default values"

.PHONY: conformance
conformance: ## Check the XenAPI simulator against xapi's datamodel (XENAPI_DATAMODEL=path/to/xenapi.json).
	go run ./hack/conformance --datamodel "$(XENAPI_DATAMODEL)"

BENCH_N ?= 1000
BENCH_ARGS ?=

.PHONY: bench
bench: build envtest ## Benchmark the operator against a plain loop on the simulator (BENCH_N=1000, BENCH_ARGS for latencies).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" go run ./hack/bench -n $(BENCH_N) $(BENCH_ARGS)

BENCH_SIZES ?= 1000,4000,10000
.PHONY: bench-scale
bench-scale: build envtest ## Scale mode (operations 10x shorter, 64 per pool) for BENCH_SIZES, one table in bin/bench/scale/scale.md.
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" go run ./hack/bench -scale -sizes $(BENCH_SIZES) $(BENCH_ARGS)

CHAOS_N ?= 150
CHAOS_ARGS ?=
# The size make test (and so CI) runs: 30 XenVMs, 4 operations in flight so that every fault lands
# mid-install; about a minute.
CHAOS_CI_N ?= 30
CHAOS_CI_ARGS ?= -concurrency 4 -out bin/chaos-ci

.PHONY: chaos
chaos: build envtest ## Run the fault-injection suite (CHAOS_N=150; CHAOS_ARGS for -seed, latencies, bounds).
	$(MAKE) --no-print-directory chaos-only

.PHONY: chaos-only
chaos-only:
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" go run ./hack/chaos -n $(CHAOS_N) $(CHAOS_ARGS)

.PHONY: bench-sim
bench-sim: ## Measure the simulator's call rate over HTTP (Go benchmark).
	go test -run '^$$' -bench BenchmarkSimpleCalls -benchtime 3s ./internal/xapisim/

.PHONY: envtest
envtest: ## Provide kube-apiserver and etcd for envtest (setup-envtest, else a build from the module proxy).
	@hack/envtest.sh $(ENVTEST_K8S_VERSION) >/dev/null

.PHONY: controlplane
controlplane: envtest manifests ## Run a local control plane (etcd + kube-apiserver, CRDs installed) until Ctrl-C.
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" \
		go run ./hack/controlplane --crds config/crd/bases --kubeconfig $(LOCALBIN)/controlplane/kubeconfig

.PHONY: demo
demo: build envtest ## Run the demo: control plane, simulator, operator and the samples (DEMO_EXIT=1 exits after printing).
	@KUBEBUILDER_ASSETS="$$(hack/envtest.sh $(ENVTEST_K8S_VERSION))" go run ./hack/demo

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build bin/manager and bin/xapi-simulator.
	go build -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/manager ./cmd/manager
	go build -o $(LOCALBIN)/xapi-simulator ./cmd/xapi-simulator

.PHONY: run-simulator
run-simulator: ## Run the XenAPI simulator (a pool of two hosts) until Ctrl-C.
	go run ./cmd/xapi-simulator --hosts 2 --port 8180 --boot-delay 2s --op-duration 500ms

.PHONY: run
run: manifests generate fmt vet ## Run the manager from your host against the cluster in KUBECONFIG.
	go run -ldflags "$(LDFLAGS)" ./cmd/manager

# If you wish to build the manager image targeting other platforms you can use the --platform flag.
# (i.e. docker build --platform linux/arm64). However, you must enable docker buildKit for it.
# More info: https://docs.docker.com/develop/develop-images/build_enhancements/
.PHONY: docker-build
docker-build: ## Build the manager image (needs a container engine).
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -t ${IMG} .

.PHONY: docker-push
docker-push: ## Push the manager image.
	$(CONTAINER_TOOL) push ${IMG}

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster in KUBECONFIG.
	"$(KUSTOMIZE)" build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall the CRDs from the cluster in KUBECONFIG. Call with ignore-not-found=true to ignore resource not found errors during deletion.
	"$(KUSTOMIZE)" build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator to the cluster in KUBECONFIG.
	cd config/manager && "$(KUSTOMIZE)" edit set image controller=${IMG}
	"$(KUSTOMIZE)" build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Undeploy the operator from the cluster in KUBECONFIG. Call with ignore-not-found=true to ignore resource not found errors during deletion.
	"$(KUSTOMIZE)" build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

## Location to install dependencies to
LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p "$(LOCALBIN)"

## Tool Binaries
KUBECTL ?= kubectl
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
GINKGO ?= $(LOCALBIN)/ginkgo
HELM ?= $(LOCALBIN)/helm

## Tool Versions
KUSTOMIZE_VERSION ?= v5.8.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
GINKGO_VERSION ?= v2.34.0
HELM_VERSION ?= v3.22.0

.PHONY: tools
tools: kustomize controller-gen golangci-lint ginkgo helm ## Install every pinned tool into bin/.

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Download kustomize locally if necessary.
$(KUSTOMIZE): $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Download controller-gen locally if necessary.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Download golangci-lint locally if necessary.
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

.PHONY: ginkgo
ginkgo: $(GINKGO) ## Download the ginkgo CLI locally if necessary.
$(GINKGO): $(LOCALBIN)
	$(call go-install-tool,$(GINKGO),github.com/onsi/ginkgo/v2/ginkgo,$(GINKGO_VERSION))

.PHONY: helm
helm: $(HELM) ## Download helm locally if necessary.
$(HELM): $(LOCALBIN)
	$(call go-install-tool,$(HELM),helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

# go-install-tool will 'go install' any package with custom target and name of binary, if it doesn't exist
# $1 - target path with name of binary
# $2 - package url which can be installed
# $3 - specific version of package
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Installing $${package} into $(LOCALBIN) (first use only)" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $${package} ;\
mv "$(1)" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef
