/* The `ociruntime` command a wheel installs (setup.py builds it static, like the init; see
 * ociruntime/launcher.py). pip rewrites only a bare `#!python` shebang and drops its flags, so no
 * script pip installs can start the venv's Python without `site` in one exec; a shell in between
 * (`#!/bin/sh`, then `exec python3 -IS`) costs ≈0.6 ms of CPU per command, this static program
 * ≈0.1 ms. It execs
 *
 *     <python> -I -S -c ENTRY_CODE <site-packages> <argv[0]> <args...>
 *
 * <python>: python<ver> next to this file (a venv's bin/, found through /proc/self/exe, so a symlink
 * to it elsewhere works too), else python<ver> on PATH; <ver> is the one the wheel was built for
 * (its C extension is for that one only). <site-packages>: ../lib/python<ver>/site-packages next to
 * it, or Debian's dist-packages. ENTRY_CODE (launcher.ENTRY_CODE, generated into entry_code.h) puts
 * that directory on sys.path after the standard library, restores argv[0] and runs the CLI; without
 * one, ENTRY_CODE_SITE runs `site` first (the ordinary start, for a layout not known here). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "entry_code.h" /* ENTRY_CODE, ENTRY_CODE_SITE, PYVER */

/* No stdio: a smaller static program is a cheaper exec (it runs on every command). */

static char *put(char *at, const char *end, const char *s)
{
    while (*s && at < end)
        *at++ = *s++;
    *at = 0;
    return at;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void say(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

int main(int argc, char **argv)
{
    static char self[PATH_MAX], python[PATH_MAX + 16], site[PATH_MAX + 48];
    const char *argv0 = argc > 0 && argv[0] ? argv[0] : "ociruntime";
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) { /* no /proc: the path as invoked (the kernel ran it, so it names the file) */
        if (!strchr(argv0, '/') || !realpath(argv0, self))
            self[0] = 0;
    } else {
        self[n] = 0;
    }
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0; /* self: the directory (bin/) */
    char *up = strrchr(self, '/');
    site[0] = 0;
    if (slash && up) {
        const char *kind[] = { "site-packages", "dist-packages" };
        for (int i = 0; i < 2 && !site[0]; i++) {
            *up = 0;
            char *at = put(site, site + sizeof(site) - 1, self);
            *up = '/';
            at = put(at, site + sizeof(site) - 1, "/lib/python" PYVER "/");
            put(at, site + sizeof(site) - 1, kind[i]);
            if (!is_dir(site))
                site[0] = 0;
        }
    }
    char **args = calloc((size_t)argc + 8, sizeof(char *));
    if (!args) {
        say("ociruntime: out of memory\n");
        return 127;
    }
    int k = 0;
    args[k++] = python;
    args[k++] = "-I";
    args[k++] = "-S";
    args[k++] = "-c";
    args[k++] = site[0] ? ENTRY_CODE : ENTRY_CODE_SITE; /* none found: the ordinary start, with `site` */
    args[k++] = site;
    args[k++] = (char *)argv0;
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    if (slash) {
        put(put(python, python + sizeof(python) - 1, self), python + sizeof(python) - 1, "/python" PYVER);
        execv(python, args);
    }
    put(python, python + sizeof(python) - 1, "python" PYVER);
    execvp(python, args);
    int err = errno;
    say("ociruntime: cannot run python" PYVER " (next to ");
    say(slash ? self : "this program");
    say("/ nor on PATH): ");
    say(strerror(err));
    say("\n");
    return 127;
}
