/* The address of a static variable, by name, from the ELF symbol table of the
 * executable or library that holds a given address.
 *
 * Some state that fork() leaves wrong in a child is a file-local variable of
 * libuv, which Node links statically. Node's release binaries keep their full
 * symbol table (.symtab), so such a variable can be found by name. A stripped
 * binary, or a Node built against a shared libuv, has none to read; then the
 * answer is 0 and the caller leaves things as they are. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cowfork.h"

#include <string.h>

#if defined(__linux__)
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  uintptr_t target;
  uintptr_t bias; /* load address minus link address */
  const char* path;
} cf__object_t;

static int cf__object_cb(struct dl_phdr_info* info, size_t size, void* arg) {
  cf__object_t* o = arg;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type != PT_LOAD || o->target < start || o->target >= start + ph->p_memsz) continue;
    o->bias = info->dlpi_addr;
    /* The main program has no name here. */
    o->path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe";
    return 1;
  }
  return 0;
}

/* Whether [off, off + len) lies inside a file of `size` bytes. */
static int cf__inside(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

/* The one STT_OBJECT symbol called `name` of `size` bytes in this image. */
static uintptr_t cf__find(const unsigned char* img, uint64_t len, const char* name, size_t size) {
  const ElfW(Ehdr)* eh = (const ElfW(Ehdr)*)img;
  uintptr_t found = 0;
  int matches = 0;

  if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) return 0;
  if (eh->e_ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32)) return 0;
  if (eh->e_shentsize != sizeof(ElfW(Shdr)) || !cf__inside(eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(ElfW(Shdr)), len))
    return 0;
  const ElfW(Shdr)* sh = (const ElfW(Shdr)*)(img + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
    const ElfW(Shdr)* strs = &sh[sh[i].sh_link];
    if (!cf__inside(sh[i].sh_offset, sh[i].sh_size, len) || !cf__inside(strs->sh_offset, strs->sh_size, len)) return 0;
    const ElfW(Sym)* syms = (const ElfW(Sym)*)(img + sh[i].sh_offset);
    const char* names = (const char*)(img + strs->sh_offset);
    size_t n = sh[i].sh_size / sizeof(ElfW(Sym));
    size_t namelen = strlen(name);
    for (size_t k = 0; k < n; k++) {
      if (ELF64_ST_TYPE(syms[k].st_info) != STT_OBJECT || syms[k].st_size != size) continue;
      if (syms[k].st_name + namelen >= strs->sh_size) continue;
      if (memcmp(names + syms[k].st_name, name, namelen + 1) != 0) continue;
      found = (uintptr_t)syms[k].st_value;
      matches++;
    }
  }
  return matches == 1 ? found : 0;
}

uintptr_t cf_static_address(uintptr_t in_object, const char* name, size_t size) {
  cf__object_t o = {in_object, 0, NULL};
  struct stat st;
  uintptr_t addr = 0;
  int fd;

  if (!dl_iterate_phdr(cf__object_cb, &o)) return 0;
  do
    fd = open(o.path, O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return 0;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    void* img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (img != MAP_FAILED) {
      addr = cf__find(img, (uint64_t)st.st_size, name, size);
      munmap(img, (size_t)st.st_size);
    }
  }
  close(fd);
  return addr ? addr + o.bias : 0;
}

#else

uintptr_t cf_static_address(uintptr_t in_object, const char* name, size_t size) {
  (void)in_object;
  (void)name;
  (void)size;
  return 0;
}

#endif
