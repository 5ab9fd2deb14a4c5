/* HMAC-SHA256 through the OpenSSL that the node binary already exports:
 * addons resolve these symbols against node itself, so nothing is linked. */
#include "cowfork.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int cf_hmac_sha256(const void* key, size_t keylen, const void* data, size_t len,
                   unsigned char out[32]) {
  unsigned int outlen = 32;
  /* OpenSSL's HMAC() takes the key length as an int. */
  if (keylen > INT_MAX) return -EINVAL;
  if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) == NULL) return -EIO;
  return outlen == 32 ? 0 : -EIO;
}

/* Constant-time comparison, so that checking a MAC leaks nothing. */
int cf_memeq(const void* a, const void* b, size_t len) {
  return CRYPTO_memcmp(a, b, len) == 0;
}
