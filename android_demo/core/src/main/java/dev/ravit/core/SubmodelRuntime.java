package dev.ravit.core;

import java.util.Map;

/**
 * Runs the submodels; the {@link Scheduler} calls it once per visited exit.
 *
 * <p>The app implements it over LiteRT interpreters (one per submodel), tests over
 * recorded outputs. Tensors are keyed by their signature names: inputs {@code image}
 * (and {@code cls_in} after the first exit), outputs {@code logits} and {@code cls_out},
 * in the dtypes and shapes of the manifest. Implementations need not be thread-safe: the
 * scheduler calls them from one thread.
 */
public interface SubmodelRuntime extends AutoCloseable {
    /**
     * Runs the submodel of exit {@code exitIndex} (0-based) once.
     *
     * @return the outputs by name; must contain {@code logits}, and {@code cls_out} for every
     *     exit but the last.
     */
    Map<String, TensorData> run(int exitIndex, Map<String, TensorData> inputs);

    /** Releases the interpreters (and their delegates). */
    @Override
    void close();
}
