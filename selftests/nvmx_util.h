/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the nvmx selftests: loading/unloading modules with the exact errno, and
 * reading what the kernel logged since a point in time (/dev/kmsg).
 */
#ifndef NVMX_UTIL_H
#define NVMX_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NVMX_MODULE_DIR_DEFAULT "/lib/modules/nvmx"

static inline const char *nvmx_module_path(void)
{
	static char path[256];
	const char *dir = getenv("NVMX_MODULE_DIR");

	snprintf(path, sizeof(path), "%s/nvmx.ko", dir ? dir : NVMX_MODULE_DIR_DEFAULT);
	return path;
}

/* finit_module(2); returns 0 or the errno. */
static inline int nvmx_load_module(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return errno;
	ret = syscall(SYS_finit_module, fd, params ? params : "", 0);
	ret = ret ? errno : 0;
	close(fd);
	return ret;
}

/* delete_module(2); returns 0 or the errno. */
static inline int nvmx_unload_module(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK) ? errno : 0;
}

static inline int nvmx_module_loaded(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/%s/initstate", name);
	return access(path, F_OK) == 0;
}

/* A cursor into the kernel log: messages logged after nvmx_kmsg_open() are readable. */
static inline int nvmx_kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/*
 * Read every record logged since the cursor into buf as message lines (the "prio,seq,..;"
 * prefix removed), NUL-terminated. Returns the number of lines.
 */
static inline int nvmx_kmsg_read(int fd, char *buf, size_t size)
{
	char rec[1024];
	size_t used = 0;
	int lines = 0;

	buf[0] = '\0';
	for (;;) {
		ssize_t n = read(fd, rec, sizeof(rec) - 1);
		char *msg, *end;

		if (n < 0 && errno == EPIPE)
			continue; /* overwritten records: keep reading the newer ones */
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		end = strchr(msg, '\n');
		if (end)
			*end = '\0';
		if (used + strlen(msg) + 2 > size)
			break;
		used += sprintf(buf + used, "%s\n", msg);
		lines++;
	}
	return lines;
}

/* Number of lines in buf that contain needle. */
static inline int nvmx_count_lines(const char *buf, const char *needle)
{
	int count = 0;
	const char *line = buf;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char tmp[1024];

		if (len >= sizeof(tmp))
			len = sizeof(tmp) - 1;
		memcpy(tmp, line, len);
		tmp[len] = '\0';
		if (strstr(tmp, needle))
			count++;
		line = nl ? nl + 1 : NULL;
	}
	return count;
}

#endif /* NVMX_UTIL_H */
