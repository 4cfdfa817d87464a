/* onnxplain C API: load an ONNX model, run it, explain it, fit and save explainers.
 *
 * Conventions
 * - Every function that can fail returns an onnxplain_status; ONNXPLAIN_OK is 0. After a failure,
 *   onnxplain_last_error() returns a message for this thread (the error kind, the node and what to
 *   do), valid until the next call into the library on this thread. No C++ exception ever crosses
 *   this interface; a NULL or mis-sized argument is ONNXPLAIN_INVALID_ARGUMENT, never a crash.
 * - Handles (onnxplain_model, onnxplain_explainer, onnxplain_params, onnxplain_tensor) are opaque;
 *   each is released by its _free function (NULL is accepted). A model may be freed while
 *   explainers made from it live: they keep what they need.
 * - Inputs are caller-owned float32 buffers in row-major order with an explicit shape; they are
 *   read during the call only. Results come back as onnxplain_tensor handles that own their data.
 * - Thread safety: a model or explainer handle may be used from several threads at once for run,
 *   explain and the read-only queries; fitting an explainer must not overlap other calls on it.
 */
#ifndef ONNXPLAIN_ONNXPLAIN_H
#define ONNXPLAIN_ONNXPLAIN_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define ONNXPLAIN_API __declspec(dllexport)
#else
#define ONNXPLAIN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum onnxplain_status {
  ONNXPLAIN_OK = 0,
  ONNXPLAIN_INVALID_ARGUMENT = 1,  /* NULL or mis-sized argument, unknown method or parameter */
  ONNXPLAIN_MODEL_FORMAT = 2,      /* not a valid ONNX model (or .oxp file), inconsistent model */
  ONNXPLAIN_UNSUPPORTED_MODEL = 3, /* the model uses ops onnxplain cannot run */
  ONNXPLAIN_SHAPE = 4,             /* an input whose shape does not fit the model */
  ONNXPLAIN_IO = 5,                /* a file that cannot be read or written */
  ONNXPLAIN_OUT_OF_MEMORY = 6,
  ONNXPLAIN_INTERNAL = 7           /* a bug: please report it with the message */
} onnxplain_status;

/* The library's version, e.g. "0.1.0" (static storage). */
ONNXPLAIN_API const char* onnxplain_version(void);
/* The message of this thread's last failure ("" when the last call succeeded). */
ONNXPLAIN_API const char* onnxplain_last_error(void);
/* The status of this thread's last call. */
ONNXPLAIN_API onnxplain_status onnxplain_last_status(void);
/* A constant name for a status, e.g. "ONNXPLAIN_SHAPE". */
ONNXPLAIN_API const char* onnxplain_status_name(onnxplain_status status);

/* ---- tensors returned by the library ------------------------------------------------------ */
typedef struct onnxplain_tensor onnxplain_tensor;
ONNXPLAIN_API size_t onnxplain_tensor_rank(const onnxplain_tensor* t);
ONNXPLAIN_API const int64_t* onnxplain_tensor_shape(const onnxplain_tensor* t); /* rank entries */
ONNXPLAIN_API size_t onnxplain_tensor_size(const onnxplain_tensor* t);          /* elements */
ONNXPLAIN_API const float* onnxplain_tensor_data(const onnxplain_tensor* t);
ONNXPLAIN_API void onnxplain_tensor_free(onnxplain_tensor* t);

/* ---- models -------------------------------------------------------------------------------- */
typedef struct onnxplain_load_options {
  int strip_softmax;   /* remove a final Softmax/LogSoftmax (default 1) */
  int fold_batch_norm; /* fold BatchNormalization into the neighbouring linear op (default 1) */
  int winograd;        /* Winograd F(4x4,3x3) for wide 3x3 convolutions (default 1) */
  int threads;         /* default threads of run/explain/fit calls; 0 = all cores (default 0) */
} onnxplain_load_options;

/* Fills opts with the defaults above. */
ONNXPLAIN_API void onnxplain_load_options_init(onnxplain_load_options* opts);

typedef struct onnxplain_model onnxplain_model;
/* opts may be NULL (defaults). */
ONNXPLAIN_API onnxplain_status onnxplain_model_load(const char* path, const onnxplain_load_options* opts,
                                                    onnxplain_model** out);
ONNXPLAIN_API onnxplain_status onnxplain_model_load_bytes(const void* data, size_t size,
                                                          const onnxplain_load_options* opts, onnxplain_model** out);
ONNXPLAIN_API void onnxplain_model_free(onnxplain_model* model);
ONNXPLAIN_API size_t onnxplain_model_num_inputs(const onnxplain_model* model);
ONNXPLAIN_API size_t onnxplain_model_num_outputs(const onnxplain_model* model);
/* The shape the graph declares for input `index` (-1 = dynamic): writes min(rank, capacity) dims
 * to dims and the rank to *rank. */
ONNXPLAIN_API onnxplain_status onnxplain_model_input_shape(const onnxplain_model* model, size_t index,
                                                           int64_t* dims, size_t capacity, size_t* rank);
/* Forward pass of a single-input model: output 0 for the batch `input` shaped `shape` (rank dims).
 * threads 0 = the model's default. */
ONNXPLAIN_API onnxplain_status onnxplain_model_run(const onnxplain_model* model, const float* input,
                                                   const int64_t* shape, size_t rank, int threads,
                                                   onnxplain_tensor** output);

/* ---- method parameters: key/value pairs (numbers, strings, float arrays) ------------------------ */
typedef struct onnxplain_params onnxplain_params;
ONNXPLAIN_API onnxplain_status onnxplain_params_create(onnxplain_params** out);
ONNXPLAIN_API onnxplain_status onnxplain_params_set_number(onnxplain_params* params, const char* key, double value);
ONNXPLAIN_API onnxplain_status onnxplain_params_set_string(onnxplain_params* params, const char* key,
                                                           const char* value);
/* A float array parameter (a baseline, a reference, box bounds); the data are copied. */
ONNXPLAIN_API onnxplain_status onnxplain_params_set_array(onnxplain_params* params, const char* key,
                                                          const float* data, const int64_t* shape, size_t rank);
ONNXPLAIN_API void onnxplain_params_free(onnxplain_params* params);

/* ---- explainers ---------------------------------------------------------------------------- */
typedef struct onnxplain_explainer onnxplain_explainer;
/* A method (a name from onnxplain_method_name) bound to a model; params may be NULL. The methods
 * computed in Python (prediction_difference, lime) are not offered here. */
ONNXPLAIN_API onnxplain_status onnxplain_explainer_create(const onnxplain_model* model, const char* method,
                                                          const onnxplain_params* params, onnxplain_explainer** out);
ONNXPLAIN_API void onnxplain_explainer_free(onnxplain_explainer* explainer);
/* Explains a batch of a single-input model. targets: NULL for the argmax per sample, else
 * n_targets entries (1 = the same output for every sample, or one per sample). deltas: NULL, or
 * room for one value per sample: how far the relevance's sum is from what the method promises
 * (LRP / Deep Taylor: f_t(x); integrated gradients, DeepLIFT: f_t(x) - f_t(reference)); a method
 * that promises no sum (the gradient) makes deltas an ONNXPLAIN_INVALID_ARGUMENT.
 * The relevance has the input's shape. threads 0 = the model's default. */
ONNXPLAIN_API onnxplain_status onnxplain_explain(const onnxplain_explainer* explainer, const float* input,
                                                 const int64_t* shape, size_t rank, const int64_t* targets,
                                                 size_t n_targets, int threads, onnxplain_tensor** relevance,
                                                 float* deltas);
/* Methods that learn from data (pattern.*): adds one batch to the statistics (a no-op for others). */
ONNXPLAIN_API onnxplain_status onnxplain_explainer_fit(onnxplain_explainer* explainer, const float* data,
                                                       const int64_t* shape, size_t rank, int threads);
/* Writes the explainer (model, method, parameters, patterns, statistics) as a .oxp file, the
 * format Python's Explainer.save writes and onnxplain.load_explainer reads. */
ONNXPLAIN_API onnxplain_status onnxplain_explainer_save(const onnxplain_explainer* explainer, const char* path);
/* Reads a .oxp file (from Python's Explainer.save or onnxplain_explainer_save) with the model it
 * holds; threads as onnxplain_load_options.threads. */
ONNXPLAIN_API onnxplain_status onnxplain_explainer_load(const char* path, int threads, onnxplain_explainer** out);

/* ---- the method catalogue ------------------------------------------------------------------ */
ONNXPLAIN_API size_t onnxplain_method_count(void);
/* The name of method `index` (static storage), or NULL when out of range. */
ONNXPLAIN_API const char* onnxplain_method_name(size_t index);

#ifdef __cplusplus
}
#endif

#endif /* ONNXPLAIN_ONNXPLAIN_H */
