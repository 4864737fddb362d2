package xapisim

import "strings"

// The xapi error codes the simulator raises (ocaml/xapi-consts/api_errors.ml).
const (
	errSessionAuthenticationFailed   = "SESSION_AUTHENTICATION_FAILED"
	errSessionInvalid                = "SESSION_INVALID"
	errHostIsSlave                   = "HOST_IS_SLAVE"
	errHandleInvalid                 = "HANDLE_INVALID"
	errUUIDInvalid                   = "UUID_INVALID"
	errMessageMethodUnknown          = "MESSAGE_METHOD_UNKNOWN"
	errMessageParameterCountMismatch = "MESSAGE_PARAMETER_COUNT_MISMATCH"
	errMessageRemoved                = "MESSAGE_REMOVED"
	errVMBadPowerState               = "VM_BAD_POWER_STATE"
	errVMIsTemplate                  = "VM_IS_TEMPLATE"
	errVMIsSnapshot                  = "VM_IS_SNAPSHOT"
	errOtherOperationInProgress      = "OTHER_OPERATION_IN_PROGRESS"
	errOperationBlocked              = "OPERATION_BLOCKED"
	errOperationNotAllowed           = "OPERATION_NOT_ALLOWED"
	errProvisionOnlyOnTemplate       = "PROVISION_ONLY_ALLOWED_ON_TEMPLATE"
	errVMCannotDeleteDefaultTemplate = "VM_CANNOT_DELETE_DEFAULT_TEMPLATE"
	errVMLacksFeature                = "VM_LACKS_FEATURE"
	errNoHostsAvailable              = "NO_HOSTS_AVAILABLE"
	errHostNotEnoughFreeMemory       = "HOST_NOT_ENOUGH_FREE_MEMORY"
	errHostNotDisabled               = "HOST_NOT_DISABLED"
	errHostDisabled                  = "HOST_DISABLED"
	errMapDuplicateKey               = "MAP_DUPLICATE_KEY"
	errInvalidValue                  = "INVALID_VALUE"
	errMemoryConstraintOrder         = "MEMORY_CONSTRAINT_VIOLATION_ORDER"
	errVDIInUse                      = "VDI_IN_USE"
	errEventFromTokenParseFailure    = "EVENT_FROM_TOKEN_PARSE_FAILURE"
	errTaskCancelled                 = "TASK_CANCELLED"
	errInternalError                 = "INTERNAL_ERROR"
	errSRBackendFailure              = "SR_BACKEND_FAILURE_44"
	errDeviceAlreadyExists           = "DEVICE_ALREADY_EXISTS"
	errVMRequiresSR                  = "VM_REQUIRES_SR"
	errVMRequiresNet                 = "VM_REQUIRES_NETWORK"
	errInvalidDevice                 = "INVALID_DEVICE"
	errMACInvalid                    = "MAC_INVALID"
	errDeviceAlreadyAttached         = "DEVICE_ALREADY_ATTACHED"
	errDeviceAlreadyDetached         = "DEVICE_ALREADY_DETACHED"
	errVMMissingPVDrivers            = "VM_MISSING_PV_DRIVERS"
	errHostCannotAttachNetwork       = "HOST_CANNOT_ATTACH_NETWORK"
	errSROperationNotSupported       = "SR_OPERATION_NOT_SUPPORTED"
	errSRHasPBD                      = "SR_HAS_PBD"
	errSRHasNoPBDs                   = "SR_HAS_NO_PBDS"
	errVDIIncompatibleType           = "VDI_INCOMPATIBLE_TYPE"
	errVDIIsSharable                 = "VDI_IS_SHARABLE"
	errVDIReadonly                   = "VDI_READONLY"
	errVDINotManaged                 = "VDI_NOT_MANAGED"
	errVDIIOError                    = "VDI_IO_ERROR"
	errVDIMissing                    = "VDI_MISSING"
	errVBDCDsMustBeReadonly          = "VBD_CDS_MUST_BE_READONLY"
	errVBDNotRemovableMedia          = "VBD_NOT_REMOVABLE_MEDIA"
	errVBDNotUnpluggable             = "VBD_NOT_UNPLUGGABLE"
	errVBDIsEmpty                    = "VBD_IS_EMPTY"
	errVBDNotEmpty                   = "VBD_NOT_EMPTY"
	errNotImplemented                = "NOT_IMPLEMENTED"
	errSRNotAttached                 = "SR_NOT_ATTACHED"
	errOnlyRevertSnapshot            = "REVERT_ONLY_ALLOWED_ON_SNAPSHOT"
	errVMRevertFailed                = "VM_REVERT_FAILED"
	errVMIsImmobile                  = "VM_IS_IMMOBILE"
	errHostNotLive                   = "HOST_NOT_LIVE"
	errHostNotEnoughPCPUs            = "HOST_NOT_ENOUGH_PCPUS"
)

// Failure is a XenAPI error: a code and its parameters, as sent in
// ErrorDescription.
type Failure struct {
	Code   string
	Params []string
}

func newFailure(code string, params ...string) *Failure {
	return &Failure{Code: code, Params: params}
}

func (f *Failure) Error() string {
	return strings.Join(append([]string{f.Code}, f.Params...), " ")
}

// description is the ErrorDescription array: code first, then the params.
func (f *Failure) description() []any {
	out := make([]any, 0, 1+len(f.Params))
	out = append(out, f.Code)
	for _, p := range f.Params {
		out = append(out, p)
	}
	return out
}

func handleInvalid(class, ref string) *Failure { return newFailure(errHandleInvalid, class, ref) }
