/*
 * bindings/run.cpp — _C.run: run folders (csrc/core/run.c), the rules python -m llmpy.train shares
 * with train_gpt2: the folder's lock, the check of a new run's folder, the log of a resumed run and
 * which flags a resumed run may change.
 */
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings/bindings.h"

namespace py = pybind11;

namespace {

// A held lock on a run folder; released by release() (or, failing that, when collected).
struct RunLock {
    llm_dir_lock *lock = nullptr;
    long stale_pid = 0;
    bool created = false;
    std::string note;
    ~RunLock() { llm_run_unlock(lock, 0); }
    void release(bool discard) {
        llm_run_unlock(lock, discard ? 1 : 0);
        lock = nullptr;
    }
};

const char *opt(const std::optional<std::string> &s) { return s ? s->c_str() : nullptr; }

} // namespace

void llmpy_register_run(py::module_ &m) {
    py::class_<RunLock>(m, "Lock", "A run folder's lock (llm_run_lock): held until release().")
        .def(py::init([](const std::string &dir, const std::string &program) {
                 auto l = std::make_unique<RunLock>();
                 llm_run_lock_info info;
                 llmpy_check(llm_run_lock(&l->lock, dir.c_str(), program.c_str(), &info));
                 l->stale_pid = info.stale_pid;
                 l->created = info.created != 0;
                 l->note = info.note;
                 return l;
             }),
             py::arg("dir"), py::arg("program"),
             "Creates dir if needed and locks it; BlockingIOError naming the holder's PID when another process "
             "holds it")
        .def("release", &RunLock::release, py::arg("discard") = false,
             "Releases the lock (removes .lock); discard=True also removes the folders it created if empty")
        .def_readonly("stale_pid", &RunLock::stale_pid, "PID of an ended holder whose lock file was taken over (0: none)")
        .def_readonly("created", &RunLock::created, "the lock created the folder")
        .def_readonly("note", &RunLock::note, "what to print about a take-over ('' when none)")
        .def_property_readonly("held", [](const RunLock &l) { return l.lock != nullptr; });
    m.def(
        "newest_step",
        [](const std::string &dir) {
            int64_t step = 0;
            llmpy_check(llm_run_newest_step(dir.c_str(), &step, nullptr));
            return step;
        },
        py::arg("dir"), "the newest step with a checkpoint file in dir (0: none)");
    m.def(
        "check_new", [](const std::string &dir, const std::string &log) { llmpy_check(llm_run_check_new(dir.c_str(), log.c_str())); },
        py::arg("dir"), py::arg("log"), "ValueError when dir already holds a run (checkpoints or a non-empty log)");
    m.def(
        "log_rewind",
        [](const std::string &path, int64_t step, int64_t max_steps) {
            llm_log_rewind_info info;
            llm_status s = llmpy_nogil([&] { return llm_log_rewind(path.c_str(), step, max_steps, &info); });
            llmpy_check(s);
            py::dict d;
            d["partial_bytes"] = info.partial_bytes;
            d["dropped"] = info.dropped;
            d["kept"] = info.kept;
            d["warning"] = std::string(info.warning);
            d["note"] = std::string(info.note);
            return d;
        },
        py::arg("path"), py::arg("step"), py::arg("max_steps"),
        "Prepares a resumed run's JSONL log (llm_log_rewind): trims a partial last line, cuts the records after "
        "step; returns {partial_bytes, dropped, kept, warning, note}");
    m.def("resume_flag_changeable", [](const std::string &flag) { return llm_resume_flag_changeable(flag.c_str()) != 0; },
          py::arg("flag"), "a resumed run may change this flag ('--max-steps': True, '--batch-size': False)");
    m.def(
        "resume_check_flag",
        [](const std::string &flag, const std::optional<std::string> &saved, const std::optional<std::string> &given) {
            llmpy_check(llm_resume_check_flag(flag.c_str(), opt(saved), opt(given)));
        },
        py::arg("flag"), py::arg("saved"), py::arg("given"),
        "ValueError naming the flag and its saved value when a resumed run may not take the given value");
}
