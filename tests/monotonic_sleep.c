/* Preloaded before libfaketime in the simulated-day tests (tests/fakeday.py).
 *
 * libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC=1 still shifts the
 * absolute CLOCK_MONOTONIC deadline of clock_nanosleep by the fake offset, which makes it
 * negative: EINVAL. Python's time.sleep is exactly such a call, so every retry back-off in
 * botocore, the AWS CLI or the daemon would fail. Monotonic time is not faked, so a monotonic
 * sleep goes to the kernel as asked; every other clock still goes through libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request,
                    struct timespec *remain) {
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (clock == CLOCK_MONOTONIC || clock == CLOCK_BOOTTIME) {
        /* clock_nanosleep returns the error number; the raw syscall sets errno. */
        return syscall(SYS_clock_nanosleep, clock, flags, request, remain) == 0 ? 0 : errno;
    }
    if (next == NULL) {
        next = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(
            RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock, flags, request, remain);
}
