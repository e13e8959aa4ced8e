/* ProcessPrng, the one export of bcryptprimitives.dll that Rust's std (1.78+) imports on
 * Windows, over RtlGenRandom (advapi32's SystemFunction036). Windows 10+ and wine 9+ ship
 * the DLL; Debian bookworm's wine 8 does not, so scripts/wine.sh builds this shim with
 * mingw-w64 into a wine prefix that lacks it. Test support only: never shipped. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
