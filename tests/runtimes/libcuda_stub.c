/* A stand-in for the NVIDIA driver's libcuda.so.1, with the signatures of cuda.h (CUDA 12
 * and 13), for the driver probe and the stream gate on machines without a GPU. Built by
 * tests/runtimes/test_cuda.py; -DNO_DEVICE makes cuInit fail as on a machine whose GPU is
 * hidden (CUDA_ERROR_NO_DEVICE). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
typedef void *CUstream;

CUresult cuInit(unsigned int flags) {
#ifdef NO_DEVICE
    return 100;
#else
    return flags == 0 ? 0 : 1;
#endif
}
CUresult cuDriverGetVersion(int *version) { *version = 13000; return 0; }
CUresult cuDeviceGetCount(int *count) { *count = 1; return 0; }
CUresult cuDeviceGet(CUdevice *device, int ordinal) { *device = ordinal; return ordinal == 0 ? 0 : 101; }
CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
    strncpy(name, "NVIDIA Stub 9000", (size_t)length);
    return 0;
}
CUresult cuGetErrorName(CUresult error, const char **text) {
    *text = error == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN";
    return 0;
}

/* the gate: records what it was asked, for the test to read back */
static CUstream last_stream;
static CUdeviceptr last_address;
static uint32_t last_value;
static unsigned int last_flags;

CUresult cuMemHostAlloc(void **pointer, size_t bytes, unsigned int flags) {
    if (flags != 0x3) return 1; /* PORTABLE | DEVICEMAP */
    *pointer = calloc(1, bytes);
    return 0;
}
CUresult cuMemFreeHost(void *pointer) { free(pointer); return 0; }
CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *device, void *host, unsigned int flags) {
    *device = (CUdeviceptr)(uintptr_t)host; /* unified addressing */
    return 0;
}
CUresult cuStreamWaitValue32_v2(CUstream stream, CUdeviceptr address, uint32_t value, unsigned int flags) {
    last_stream = stream; last_address = address; last_value = value; last_flags = flags;
    return 0;
}
/* the legacy symbol: off unless the driver's stream memory operations were enabled */
CUresult cuStreamWaitValue32(CUstream stream, CUdeviceptr address, uint32_t value, unsigned int flags) { return 801; }

void stub_last_wait(uint64_t *out) {
    out[0] = (uint64_t)(uintptr_t)last_stream; out[1] = last_address; out[2] = last_value; out[3] = last_flags;
}
