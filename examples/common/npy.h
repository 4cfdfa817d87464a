/* A minimal reader and writer of float32 C-order .npy files (NumPy format 1.0/2.0) for the
 * examples: enough to exchange batches with Python, nothing more. */
#ifndef ONNXPLAIN_EXAMPLES_NPY_H
#define ONNXPLAIN_EXAMPLES_NPY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads path into *data (malloc'ed, free() it) and shape (up to 8 dims); returns 0 on success. */
static int npy_read(const char* path, float** data, int64_t* shape, size_t* rank) {
  FILE* f = fopen(path, "rb");
  unsigned char magic[8];
  char header[4096];
  uint32_t hlen = 0;
  size_t n = 1;
  const char* p;
  if (!f) return -1;
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0) goto bad;
  if (magic[6] == 1) {
    unsigned char b[2];
    if (fread(b, 1, 2, f) != 2) goto bad;
    hlen = (uint32_t)b[0] | ((uint32_t)b[1] << 8);
  } else {
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) goto bad;
    hlen = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
  }
  if (hlen >= sizeof header || fread(header, 1, hlen, f) != hlen) goto bad;
  header[hlen] = '\0';
  if (!strstr(header, "'descr': '<f4'") || !strstr(header, "'fortran_order': False")) goto bad;
  p = strstr(header, "'shape': (");
  if (!p) goto bad;
  p += strlen("'shape': (");
  *rank = 0;
  while (*p && *p != ')') {
    char* end;
    long long d = strtoll(p, &end, 10);
    if (end == p) break;
    if (*rank >= 8 || d < 0) goto bad;
    shape[(*rank)++] = d;
    n *= (size_t)d;
    p = end;
    while (*p == ',' || *p == ' ') ++p;
  }
  *data = (float*)malloc(n ? n * sizeof(float) : 1);
  if (!*data) goto bad;
  if (fread(*data, sizeof(float), n, f) != n) {
    free(*data);
    goto bad;
  }
  fclose(f);
  return 0;
bad:
  fclose(f);
  return -1;
}

/* Writes a float32 array of the given shape; returns 0 on success. */
static int npy_write(const char* path, const float* data, const int64_t* shape, size_t rank) {
  char dict[512], dims[256] = "";
  size_t n = 1, i, len, pad;
  FILE* f;
  for (i = 0; i < rank; ++i) {
    char d[32];
    snprintf(d, sizeof d, "%lld%s", (long long)shape[i], rank == 1 ? "," : (i + 1 < rank ? ", " : ""));
    strcat(dims, d);
    n *= (size_t)shape[i];
  }
  snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
  len = strlen(dict);
  pad = 64 - (10 + len + 1) % 64;
  f = fopen(path, "wb");
  if (!f) return -1;
  {
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    size_t hlen = len + pad + 1;
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    fwrite(head, 1, 10, f);
  }
  fwrite(dict, 1, len, f);
  for (i = 0; i < pad; ++i) fputc(' ', f);
  fputc('\n', f);
  if (fwrite(data, sizeof(float), n, f) != n) {
    fclose(f);
    return -1;
  }
  return fclose(f) == 0 ? 0 : -1;
}

#endif
