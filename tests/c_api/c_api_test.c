/* The C API from C, for the sanitizer build (scripts/sanitize_c_api.sh): loads the digits CNN,
 * explains with three methods, and walks every error path (malformed model, unknown method, wrong
 * parameter, wrong input size, NULL handles and arguments, missing files). Prints one line per
 * check and exits 1 on the first unexpected result. Usage: c_api_test model.onnx */
#include <onnxplain/onnxplain.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static void expect(int cond, const char* what) {
  printf("%s %s\n", cond ? "ok  " : "FAIL", what);
  if (!cond) {
    printf("     last error: %s\n", onnxplain_last_error());
    ++failures;
  }
}

int main(int argc, char** argv) {
  onnxplain_model* model = NULL;
  onnxplain_explainer* ex = NULL;
  onnxplain_params* params = NULL;
  onnxplain_tensor* out = NULL;
  const char* methods[] = {"gradient", "lrp.epsilon_plus_flat", "integrated_gradients", "occlusion"};
  float x[2 * 64];
  int64_t shape[4] = {2, 1, 8, 8}, bad_shape[4] = {2, 1, 8, 7}, target = 3;
  float deltas[2];
  size_t i;
  if (argc < 2) return 2;
  for (i = 0; i < 128; ++i) x[i] = (float)((i * 37) % 17) / 17.0f;

  expect(strlen(onnxplain_version()) > 0, "version");
  expect(onnxplain_model_load_bytes("garbage", 7, NULL, &model) == ONNXPLAIN_MODEL_FORMAT && model == NULL,
         "malformed bytes -> ONNXPLAIN_MODEL_FORMAT");
  expect(strstr(onnxplain_last_error(), "ModelFormatError") != NULL, "  with its message");
  expect(onnxplain_model_load("/nonexistent/model.onnx", NULL, &model) == ONNXPLAIN_IO, "missing file -> IO");
  expect(onnxplain_model_load(NULL, NULL, &model) == ONNXPLAIN_INVALID_ARGUMENT, "NULL path");
  expect(onnxplain_model_load(argv[1], NULL, NULL) == ONNXPLAIN_INVALID_ARGUMENT, "NULL out");
  expect(onnxplain_model_load(argv[1], NULL, &model) == ONNXPLAIN_OK, "load the model");
  if (!model) return 1;

  expect(onnxplain_explainer_create(model, "lrp.nonsense", NULL, &ex) == ONNXPLAIN_INVALID_ARGUMENT && ex == NULL,
         "unknown method");
  expect(onnxplain_params_create(&params) == ONNXPLAIN_OK, "params");
  expect(onnxplain_params_set_number(params, "epsilonn", 0.1) == ONNXPLAIN_OK, "set a misspelt parameter");
  expect(onnxplain_explainer_create(model, "lrp.epsilon", params, &ex) == ONNXPLAIN_INVALID_ARGUMENT,
         "wrong parameter refused");
  expect(onnxplain_params_set_number(NULL, "a", 1) == ONNXPLAIN_INVALID_ARGUMENT, "NULL params");
  expect(onnxplain_params_set_string(params, "a", NULL) == ONNXPLAIN_INVALID_ARGUMENT, "NULL string value");
  onnxplain_params_free(params);
  expect(onnxplain_explainer_create(NULL, "gradient", NULL, &ex) == ONNXPLAIN_INVALID_ARGUMENT, "NULL model");

  for (i = 0; i < sizeof methods / sizeof methods[0]; ++i) {
    const int sums = i == 1 || i == 2;
    char what[128];
    expect(onnxplain_explainer_create(model, methods[i], NULL, &ex) == ONNXPLAIN_OK, methods[i]);
    snprintf(what, sizeof what, "  explain with %s", methods[i]);
    expect(onnxplain_explain(ex, x, shape, 4, &target, 1, 0, &out, sums ? deltas : NULL) == ONNXPLAIN_OK &&
               onnxplain_tensor_size(out) == 128 && onnxplain_tensor_rank(out) == 4,
           what);
    onnxplain_tensor_free(out);
    out = NULL;
    expect(onnxplain_explain(ex, x, bad_shape, 4, NULL, 0, 0, &out, NULL) == ONNXPLAIN_SHAPE && out == NULL,
           "  wrong input size -> ONNXPLAIN_SHAPE");
    expect(onnxplain_explain(ex, NULL, shape, 4, NULL, 0, 0, &out, NULL) == ONNXPLAIN_INVALID_ARGUMENT,
           "  NULL input");
    expect(onnxplain_explain(ex, x, NULL, 4, NULL, 0, 0, &out, NULL) == ONNXPLAIN_INVALID_ARGUMENT, "  NULL shape");
    expect(onnxplain_explain(ex, x, shape, 4, NULL, 0, 0, NULL, NULL) == ONNXPLAIN_INVALID_ARGUMENT,
           "  NULL relevance");
    onnxplain_explainer_free(ex);
    ex = NULL;
  }
  expect(onnxplain_explain(NULL, x, shape, 4, NULL, 0, 0, &out, NULL) == ONNXPLAIN_INVALID_ARGUMENT,
         "NULL explainer");
  expect(onnxplain_model_run(model, x, shape, 4, 0, &out) == ONNXPLAIN_OK && onnxplain_tensor_size(out) == 20,
         "run");
  onnxplain_tensor_free(out);
  expect(onnxplain_explainer_load("/nonexistent/x.oxp", 0, &ex) == ONNXPLAIN_IO, "missing .oxp -> IO");
  onnxplain_model_free(model);
  onnxplain_model_free(NULL);
  onnxplain_explainer_free(NULL);
  onnxplain_tensor_free(NULL);
  onnxplain_params_free(NULL);
  printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
