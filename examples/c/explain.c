/* Explains a batch with onnxplain's C API and writes the relevance.
 *
 *   explain_c model.onnx input.npy method out.npy [key=value ...] [target=K]
 *
 * Numbers in key=value become number parameters, anything else string parameters; target=K
 * explains output K for every sample (default: the argmax per sample). Exit status 0 on success,
 * 1 with the library's message on stderr otherwise. */
#include <onnxplain/onnxplain.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/npy.h"

static int fail(const char* what) {
  fprintf(stderr, "%s: %s (%s)\n", what, onnxplain_last_error(), onnxplain_status_name(onnxplain_last_status()));
  return 1;
}

int main(int argc, char** argv) {
  onnxplain_model* model = NULL;
  onnxplain_params* params = NULL;
  onnxplain_explainer* ex = NULL;
  onnxplain_tensor* rel = NULL;
  float* x = NULL;
  int64_t shape[8], target = -1;
  size_t rank = 0;
  int i, rc = 1;
  if (argc < 5) {
    fprintf(stderr, "usage: %s model.onnx input.npy method out.npy [key=value ...]\n", argv[0]);
    return 2;
  }
  if (npy_read(argv[2], &x, shape, &rank) != 0) {
    fprintf(stderr, "cannot read %s as a float32 C-order .npy file\n", argv[2]);
    return 1;
  }
  if (onnxplain_model_load(argv[1], NULL, &model) != ONNXPLAIN_OK) { rc = fail("load"); goto done; }
  if (onnxplain_params_create(&params) != ONNXPLAIN_OK) { rc = fail("params"); goto done; }
  for (i = 5; i < argc; ++i) {
    char* eq = strchr(argv[i], '=');
    char* end;
    double v;
    if (!eq) { fprintf(stderr, "expected key=value, got %s\n", argv[i]); goto done; }
    *eq = '\0';
    v = strtod(eq + 1, &end);
    if (strcmp(argv[i], "target") == 0) { target = (int64_t)v; continue; }
    if (*end == '\0' && end != eq + 1) {
      if (onnxplain_params_set_number(params, argv[i], v) != ONNXPLAIN_OK) { rc = fail("parameter"); goto done; }
    } else if (onnxplain_params_set_string(params, argv[i], eq + 1) != ONNXPLAIN_OK) {
      rc = fail("parameter");
      goto done;
    }
  }
  if (onnxplain_explainer_create(model, argv[3], params, &ex) != ONNXPLAIN_OK) { rc = fail("method"); goto done; }
  if (onnxplain_explain(ex, x, shape, rank, target >= 0 ? &target : NULL, target >= 0 ? 1 : 0, 0, &rel, NULL) !=
      ONNXPLAIN_OK) {
    rc = fail("explain");
    goto done;
  }
  if (npy_write(argv[4], onnxplain_tensor_data(rel), onnxplain_tensor_shape(rel), onnxplain_tensor_rank(rel)) != 0) {
    fprintf(stderr, "cannot write %s\n", argv[4]);
    goto done;
  }
  printf("%s: relevance of %zu values written to %s\n", argv[3], onnxplain_tensor_size(rel), argv[4]);
  rc = 0;
done:
  onnxplain_tensor_free(rel);
  onnxplain_explainer_free(ex);
  onnxplain_params_free(params);
  onnxplain_model_free(model);
  free(x);
  return rc;
}
